// The server secret key (file under the state directory or S0_SECRET_KEY) and AES-256-GCM
// sealing bound to the row it is stored in.
import { randomBytes } from 'node:crypto'
import { chmod, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { inspect } from 'node:util'
import { afterEach, describe, expect, it } from 'vitest'
import { isS0Error } from '../../src/core/errors.js'
import { SECRET_KEY_FILE, SecretKey, loadSecretKey } from '../../src/egress/credentials/index.js'
import { open, seal } from '../../src/egress/credentials/seal.js'

const dirs: string[] = []
async function tempDir(): Promise<string> {
  const d = await mkdtemp(path.join(os.tmpdir(), 's0-key-'))
  dirs.push(d)
  return d
}
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function failure(p: Promise<unknown>): Promise<Error> {
  const err = await p.then(
    () => new Error('expected a failure'),
    (e: unknown) => e as Error,
  )
  expect(isS0Error(err), String(err)).toBe(true)
  return err
}

describe('server secret key', () => {
  it('is created once, 32 bytes with mode 0600, and read back the same', async () => {
    const dir = await tempDir()
    const a = await loadSecretKey({ stateDir: dir })
    const file = path.join(dir, SECRET_KEY_FILE)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    expect((await readFile(file)).length).toBe(32)
    const b = await loadSecretKey({ stateDir: dir })
    expect(b.id).toBe(a.id)
    expect(b.material().equals(a.material())).toBe(true)
  })

  it('is created in a state directory that does not exist yet', async () => {
    const dir = path.join(await tempDir(), 'deeper', 'state')
    await loadSecretKey({ stateDir: dir })
    expect((await stat(path.join(dir, SECRET_KEY_FILE))).mode & 0o777).toBe(0o600)
  })

  it('two starters at once agree on one key', async () => {
    const dir = await tempDir()
    const keys = await Promise.all(Array.from({ length: 8 }, () => loadSecretKey({ stateDir: dir })))
    expect(new Set(keys.map((k) => k.id)).size).toBe(1)
  })

  it('a key file others may read is refused, and so is a symbolic link', async () => {
    const dir = await tempDir()
    await loadSecretKey({ stateDir: dir })
    const file = path.join(dir, SECRET_KEY_FILE)
    await chmod(file, 0o640)
    expect((await failure(loadSecretKey({ stateDir: dir }))).message).toMatch(/mode 640.*chmod 600/)
    await chmod(file, 0o604)
    await failure(loadSecretKey({ stateDir: dir }))

    const other = await tempDir()
    await chmod(file, 0o600)
    await symlink(file, path.join(other, SECRET_KEY_FILE))
    expect((await failure(loadSecretKey({ stateDir: other }))).message).toMatch(/regular file/)
  })

  it('a key file of the wrong size is refused', async () => {
    const dir = await tempDir()
    await writeFile(path.join(dir, SECRET_KEY_FILE), randomBytes(16), { mode: 0o600 })
    expect((await failure(loadSecretKey({ stateDir: dir }))).message).toMatch(/exactly 32 bytes/)
  })

  it('S0_SECRET_KEY wins, in hex or base64, and its value never appears in an error', async () => {
    const dir = await tempDir()
    const raw = randomBytes(32)
    const hex = await loadSecretKey({ stateDir: dir, envValue: raw.toString('hex') })
    const b64 = await loadSecretKey({ stateDir: dir, envValue: raw.toString('base64') })
    const b64url = await loadSecretKey({ stateDir: dir, envValue: raw.toString('base64url') })
    expect(hex.material().equals(raw)).toBe(true)
    expect(b64.id).toBe(hex.id)
    expect(b64url.id).toBe(hex.id)
    // The environment wins: no key file is made.
    await expect(stat(path.join(dir, SECRET_KEY_FILE))).rejects.toThrow()
    for (const bad of [
      'abc',
      randomBytes(16).toString('hex'),
      randomBytes(31).toString('base64'),
      'z'.repeat(64),
    ]) {
      const err = await failure(loadSecretKey({ stateDir: dir, envValue: bad }))
      expect(err.message).not.toContain(bad)
    }
  })

  it('prints, inspects and serialises as its id only', () => {
    const key = SecretKey.generate()
    const material = key.material()
    for (const shown of [
      String(key),
      JSON.stringify({ key }),
      inspect(key),
      inspect({ key }, { depth: 5 }),
    ]) {
      expect(shown).toContain(key.id)
      expect(shown).not.toContain(material.toString('hex'))
      expect(shown).not.toContain(material.toString('base64'))
    }
  })
})

describe('sealing', () => {
  const row = { teamId: 'team-a', name: 'gh', version: 2, resolverKind: 'static_headers' }

  it('opens what it sealed, with a fresh nonce each time', () => {
    const key = SecretKey.generate()
    const a = seal(key, Buffer.from('secret value'), row)
    const b = seal(key, Buffer.from('secret value'), row)
    expect(a.nonce.equals(b.nonce)).toBe(false)
    expect(a.ciphertext.includes(Buffer.from('secret'))).toBe(false)
    expect(open(key, a, row).toString()).toBe('secret value')
  })

  it('a sealed value moved to another team, name, version or kind does not open', () => {
    const key = SecretKey.generate()
    const sealed = seal(key, Buffer.from('secret value'), row)
    for (const other of [
      { ...row, teamId: 'team-b' },
      { ...row, name: 'gh2' },
      { ...row, version: 3 },
      { ...row, resolverKind: 'static_username_password' },
    ]) {
      expect(() => open(key, sealed, other)).toThrow(/does not authenticate/)
    }
  })

  it('an altered ciphertext or tag does not open; another key says which key sealed it', () => {
    const key = SecretKey.generate()
    const sealed = seal(key, Buffer.from('secret value'), row)
    const flipped = Buffer.from(sealed.ciphertext)
    flipped[0] = (flipped[0] as number) ^ 1
    expect(() => open(key, { ...sealed, ciphertext: flipped }, row)).toThrow(/does not authenticate/)
    const tag = Buffer.from(sealed.tag)
    tag[3] = (tag[3] as number) ^ 0x80
    expect(() => open(key, { ...sealed, tag }, row)).toThrow(/does not authenticate/)
    const other = SecretKey.generate()
    expect(() => open(other, sealed, row)).toThrow(new RegExp(`sealed with secret key ${key.id}`))
    // Even with a forged key id, the wrong key cannot open it.
    expect(() => open(other, { ...sealed, keyId: other.id }, row)).toThrow(/does not authenticate/)
  })
})
