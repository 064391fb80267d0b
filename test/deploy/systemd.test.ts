// The systemd units (deploy/systemd): each runs its role with the settings the Kubernetes
// manifests give the same role, the agent as root and the API confined. Parsed as text: no
// systemd needed (on a host with it, `systemd-analyze verify` checks the syntax too).
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { AGENT_ENV, PROCESS_ENV, SHARED_ENV } from './roles.js'

const DIR = path.resolve(import.meta.dirname, '..', '..', 'deploy', 'systemd')

/** `Key=value` lines of a unit, every value of a repeated key in order. */
function unit(file: string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const line of readFileSync(path.join(DIR, file), 'utf8').split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line)
    if (m === null) continue
    out.set(m[1] as string, [...(out.get(m[1] as string) ?? []), m[2] as string])
  }
  return out
}

/** Names an env file (or a unit's Environment= lines) sets. */
function envNames(lines: string[]): string[] {
  return lines.flatMap((l) => /^([A-Z0-9_]+)=/.exec(l)?.[1] ?? [])
}

function exampleEnv(file: string): string[] {
  return envNames(readFileSync(path.join(DIR, file), 'utf8').split('\n'))
}

describe('deploy/systemd', () => {
  const shared = exampleEnv('s0.env.example')

  it('puts the shared settings in the one env file every host gets', () => {
    for (const name of SHARED_ENV) expect(shared, name).toContain(name)
  })

  it('runs `s0 api` confined, with the shared env file and its own state and port', () => {
    const u = unit('s0-api.service')
    expect(u.get('ExecStart')?.[0]).toMatch(/ api$/)
    expect(u.get('EnvironmentFile')).toContain('/etc/s0/s0.env')
    expect(envNames(u.get('Environment') ?? [])).toEqual(expect.arrayContaining(PROCESS_ENV))
    expect(u.get('DynamicUser')).toEqual(['yes'])
    expect(u.get('NoNewPrivileges')).toEqual(['yes'])
    expect(u.get('CapabilityBoundingSet')).toEqual([''])
    expect(u.get('ProtectSystem')).toEqual(['strict'])
  })

  it('runs `s0 agent` as root with the shared and the per-host env files', () => {
    const u = unit('s0-agent.service')
    expect(u.get('ExecStart')?.[0]).toMatch(/ agent$/)
    expect(u.get('User')).toEqual(['root'])
    expect(u.get('EnvironmentFile')).toEqual(['/etc/s0/s0.env', '/etc/s0/agent.env'])
    const env = [...envNames(u.get('Environment') ?? []), ...shared, ...exampleEnv('agent.env.example')]
    for (const name of [...SHARED_ENV, ...PROCESS_ENV, ...AGENT_ENV]) expect(env, name).toContain(name)
    // Anything systemd would impose on the agent its sandboxes would inherit.
    for (const key of [
      'NoNewPrivileges',
      'SystemCallFilter',
      'PrivateDevices',
      'ProtectSystem',
      'DynamicUser',
    ]) {
      expect(u.has(key), key).toBe(false)
    }
  })

  it('gives the agent a different state directory and port from the API, so one host may run both', () => {
    const api = unit('s0-api.service').get('Environment') ?? []
    const agent = unit('s0-agent.service').get('Environment') ?? []
    for (const name of ['S0_STATE_DIR', 'S0_PORT']) {
      const value = (lines: string[]): string | undefined =>
        lines.find((l) => l.startsWith(`${name}=`))?.slice(name.length + 1)
      expect(value(api)).toBeDefined()
      expect(value(api)).not.toBe(value(agent))
    }
  })
})
