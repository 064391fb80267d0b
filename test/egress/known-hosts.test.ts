// known_hosts matching as OpenSSH does it: patterns, ports, hashed names (made by ssh-keygen -H),
// negation, @revoked, and the s0 bare-key convenience; @cert-authority trusts nothing here.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import ssh2 from 'ssh2'
import { describe, expect, it } from 'vitest'
import { checkKnownHost, sshFingerprint } from '../../src/egress/known-hosts.js'
import { generateEd25519 } from '../../src/core/ssh-keygen.js'

function hostKey(): { line: string; blob: Buffer } {
  const pub = generateEd25519().public
  const line = pub.split(' ').slice(0, 2).join(' ')
  return { line, blob: (ssh2.utils.parseKey(line) as ssh2.ParsedKey).getPublicSSH() }
}

/** The lines, hashed by OpenSSH's own `ssh-keygen -H`. */
function hashed(lines: string[]): string[] {
  const dir = mkdtempSync(path.join(os.tmpdir(), 's0-kh-'))
  try {
    const file = path.join(dir, 'known_hosts')
    writeFileSync(file, lines.join('\n') + '\n')
    execFileSync('ssh-keygen', ['-H', '-f', file], { stdio: 'ignore' })
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe('checkKnownHost', () => {
  const a = hostKey()
  const b = hostKey()

  it('matches a plain name on port 22 and [name]:port elsewhere', () => {
    expect(checkKnownHost([`github.com ${a.line}`], ['github.com'], 22, a.blob).verdict).toBe('trusted')
    expect(checkKnownHost([`github.com ${a.line}`], ['github.com'], 2222, a.blob).verdict).toBe(
      'unknown-host',
    )
    expect(checkKnownHost([`[github.com]:2222 ${a.line}`], ['github.com'], 2222, a.blob).verdict).toBe(
      'trusted',
    )
    expect(checkKnownHost([`[::1]:2222 ${a.line}`], ['::1'], 2222, a.blob).verdict).toBe('trusted')
  })

  it('tells a changed key from an unknown host, and names the key by its OpenSSH fingerprint', () => {
    const r = checkKnownHost([`github.com ${a.line}`], ['github.com'], 22, b.blob)
    expect(r.verdict).toBe('unknown-key')
    const keygen = execFileSync('ssh-keygen', ['-l', '-f', '-'], { input: `${b.line}\n` }).toString()
    expect(keygen).toContain(r.fingerprint)
    expect(r.fingerprint).toBe(sshFingerprint(b.blob))
    expect(checkKnownHost([`gitlab.com ${a.line}`], ['github.com'], 22, a.blob).verdict).toBe('unknown-host')
  })

  it('comma lists, wildcards, negation and aliases', () => {
    const lines = [`git.example.com,*.corp.test,!bad.corp.test ${a.line}`]
    expect(checkKnownHost(lines, ['git.example.com'], 22, a.blob).verdict).toBe('trusted')
    expect(checkKnownHost(lines, ['build.corp.test'], 22, a.blob).verdict).toBe('trusted')
    expect(checkKnownHost(lines, ['BUILD.CORP.TEST'], 22, a.blob).verdict).toBe('trusted')
    expect(checkKnownHost(lines, ['bad.corp.test'], 22, a.blob).verdict).toBe('unknown-host')
    expect(checkKnownHost(lines, ['corp.test'], 22, a.blob).verdict).toBe('unknown-host')
    // An address, known in knownHosts by its name.
    expect(checkKnownHost(lines, ['10.0.0.7', 'git.example.com'], 22, a.blob).verdict).toBe('trusted')
  })

  it('hashed names, as ssh-keygen -H writes them', () => {
    const lines = hashed([`github.com ${a.line}`, `[git.example.com]:2222 ${b.line}`])
    expect(lines.every((l) => l.startsWith('|1|'))).toBe(true)
    expect(checkKnownHost(lines, ['github.com'], 22, a.blob).verdict).toBe('trusted')
    expect(checkKnownHost(lines, ['git.example.com'], 2222, b.blob).verdict).toBe('trusted')
    expect(checkKnownHost(lines, ['git.example.com'], 2222, a.blob).verdict).toBe('unknown-key')
    expect(checkKnownHost(lines, ['gitlab.com'], 22, a.blob).verdict).toBe('unknown-host')
  })

  it('@revoked wins over a listing; @cert-authority, comments and junk trust nothing', () => {
    expect(
      checkKnownHost([`github.com ${a.line}`, `@revoked * ${a.line}`], ['github.com'], 22, a.blob).verdict,
    ).toBe('revoked')
    expect(checkKnownHost([`@cert-authority github.com ${a.line}`], ['github.com'], 22, a.blob).verdict).toBe(
      'unknown-host',
    )
    const junk = [
      '# github.com ' + a.line,
      '',
      'github.com ssh-ed25519 !!!',
      `github.com ssh-rsa ${a.line.split(' ')[1]}`,
    ]
    expect(checkKnownHost(junk, ['github.com'], 22, a.blob).verdict).toBe('unknown-host')
  })

  it('a bare key line trusts that key for any host, and only that key', () => {
    expect(checkKnownHost([a.line], ['anything.test'], 2200, a.blob).verdict).toBe('trusted')
    expect(checkKnownHost([a.line], ['anything.test'], 2200, b.blob).verdict).toBe('unknown-key')
  })
})
