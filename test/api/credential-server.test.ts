// The real `s0 server` process serves the credential-source routes with the key it keeps under
// its state directory (created 0600 on first start, the same after a restart), refuses to start
// with a key file others may read, and lets S0_SECRET_KEY win.
import { spawn } from 'node:child_process'
import { chmod, readFile, stat } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { asTeamId } from '../../src/core/ids.js'
import { silentLogger } from '../../src/core/log.js'
import {
  CredentialSourceService,
  SECRET_KEY_FILE,
  loadSecretKey,
} from '../../src/egress/credentials/index.js'
import { serverProcesses, type ServerProcesses } from '../support/server.js'

let servers: ServerProcesses

beforeAll(async () => {
  servers = await serverProcesses({ prefix: 's0-cred-server-' })
}, 120_000)

afterAll(async () => {
  await servers?.close()
})

/** `s0 server` that is expected to refuse to start: its exit code and what it printed. */
function failedStart(env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', path.join(import.meta.dirname, '../support/s0-main.ts'), 'server'],
    {
      env: {
        ...process.env,
        S0_STATE_DIR: servers.stateDir,
        S0_PORT: String(servers.port),
        DATABASE_URL: servers.tdb.url,
        S0_SSH_PORT: '0',
        ...env,
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  )
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => void (stderr += d.toString()))
  return new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr })))
}

describe('s0 server and credential sources', () => {
  it('serves the routes, seals with its key file, and keeps the key across a restart', async () => {
    await servers.start()
    const file = path.join(servers.stateDir, SECRET_KEY_FILE)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    const key = await readFile(file)
    const res = await servers.api('/api/v1/credential-sources', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'api-token',
        resolverKind: 'static_headers',
        spec: { staticHeaders: { values: { token: 'server-sealed-secret' } } },
      }),
    })
    expect(res.status).toBe(201)
    expect(JSON.stringify(await res.json())).not.toContain('server-sealed-secret')

    await servers.kill('SIGKILL')
    await servers.start()
    expect((await readFile(file)).equals(key)).toBe(true)
    const got = (await (await servers.api('/api/v1/credential-sources/api-token')).json()) as {
      data: { currentVersion: number }
    }
    expect(got.data.currentVersion).toBe(1)

    // What the server sealed opens with the key in its state directory.
    const { rows } = await servers.tdb.db.query<{ team_id: string }>('SELECT team_id FROM credential_sources')
    const svc = new CredentialSourceService({
      db: servers.tdb.db,
      key: await loadSecretKey({ stateDir: servers.stateDir }),
      log: silentLogger,
    })
    const resolved = await svc.resolve(asTeamId((rows[0] as { team_id: string }).team_id), 'api-token')
    expect(resolved.fields).toEqual({ token: 'server-sealed-secret' })
    await servers.kill('SIGTERM')
  }, 120_000)

  it('refuses to start when the key file is readable by others, or S0_SECRET_KEY is malformed', async () => {
    const file = path.join(servers.stateDir, SECRET_KEY_FILE)
    await chmod(file, 0o644)
    const wide = await failedStart({})
    expect(wide.code).not.toBe(0)
    expect(wide.stderr).toMatch(/secret\.key has mode 644/)
    await chmod(file, 0o600)

    const bad = await failedStart({ S0_SECRET_KEY: 'not-a-key-value' })
    expect(bad.code).not.toBe(0)
    expect(bad.stderr).toMatch(/S0_SECRET_KEY must be 32 bytes/)
    expect(bad.stderr).not.toContain('not-a-key-value')
  }, 120_000)
})
