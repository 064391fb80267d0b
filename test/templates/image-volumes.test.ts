// Registry images in the chunk engine (issue 15, 3b): a pulled image is imported into a volume of
// the system owner; a host that lacks the unpacked directory (and the OCI layout, and the
// registry) writes it back from the chunk store, with its metadata; a second image sharing the
// first one's content adds almost no chunk bytes; the orphan sweep spares image volumes a
// template names and drops them once none does.
import { createHash } from 'node:crypto'
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Client } from 'sandbox0'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/core/log.js'
import { MountManager } from '../../src/fuse/mounts.js'
import { runCli, runCliOk } from '../../src/runtime/cli.js'
import { Checkpoints } from '../../src/sandboxes/checkpoints.js'
import { VolumeEngine } from '../../src/snapshots/engine.js'
import { TEMPLATE_CACHE_DIR } from '../runtime/support.js'
import { missingPrerequisite } from '../runtime/template-cache.js'
import { startTemplateServer, type TemplateTestServer } from './fixture.js'
import { registryMissing, startRegistry, type TestRegistry } from './registry.js'

const spec = (image: string): Record<string, unknown> => ({
  mainContainer: { image, resources: { memory: '256Mi' } },
})

/** Every entry of a tree with its metadata and content hash, by relative path. */
async function describeTree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {}
  const walk = async (rel: string): Promise<void> => {
    const p = path.join(root, rel)
    const st = await lstat(p, { bigint: true })
    let what = `${st.mode.toString(8)} ${st.uid}:${st.gid} n${st.nlink} r${st.rdev} m${st.mtimeNs / 1_000_000_000n}`
    if (st.isSymbolicLink()) what += ` -> ${await readlink(p)}`
    else if (st.isFile())
      what += ` ${createHash('sha256')
        .update(await readFile(p))
        .digest('hex')}`
    else if (!st.isDirectory()) what += ' special'
    out[rel || '.'] = what
    if (st.isDirectory()) for (const n of (await readdir(p)).sort()) await walk(path.join(rel, n))
  }
  await walk('')
  // Extended attributes as getfattr dumps them (relative names, symlinks not followed).
  const x = await runCli('getfattr', ['-R', '-h', '-d', '-m', '-', '.'], { cwd: root })
  out['<xattrs>'] = x.stdout
  return out
}

async function chunkBytes(s: TemplateTestServer): Promise<number> {
  const { rows } = await s.t.tdb.db.query<{ n: string }>(
    `SELECT coalesce(sum(raw_bytes), 0)::bigint AS n FROM chunks WHERE team_id = 's0-images'`,
  )
  return Number(rows[0]?.n ?? 0)
}

describe.skipIf(missingPrerequisite(registryMissing()))('registry images in the chunk engine', () => {
  let server: TemplateTestServer
  let client: Client
  let reg: TestRegistry
  /** Closed once (a second close would wait for an exit that already happened). */
  let regClosed = false
  let work: string
  let base: string
  const busybox = path.join(TEMPLATE_CACHE_DIR, 'busybox', 'rootfs')
  const digests: Record<string, string> = {}

  beforeAll(async () => {
    ;[server, reg] = await Promise.all([startTemplateServer(), startRegistry()])
    client = new Client({ token: server.token, baseUrl: server.url + '/' })
    work = await mkdtemp(path.join(tmpdir(), 's0-imgvol-tree-'))
    base = path.join(work, 'base')
    await runCliOk('cp', ['-a', busybox, base])
    // Metadata the round trip must keep: setuid, a symlink, a non-root owner, an empty
    // directory, a hard link, a FIFO, a device node, an extended attribute.
    await writeFile(path.join(base, 'suid-tool'), '#!/bin/sh\necho suid\n')
    await runCliOk('chmod', ['4755', path.join(base, 'suid-tool')])
    await runCliOk('ln', ['-s', 'marker.txt', path.join(base, 'marker-link')])
    await writeFile(path.join(base, 'owned.txt'), 'owned by 1234\n')
    await runCliOk('chown', ['1234:2345', path.join(base, 'owned.txt')])
    await runCliOk('chmod', ['0640', path.join(base, 'owned.txt')])
    await mkdir(path.join(base, 'empty-dir'))
    await runCliOk('chown', ['1000:1000', path.join(base, 'empty-dir')])
    await runCliOk('chmod', ['0750', path.join(base, 'empty-dir')])
    await runCliOk('ln', [path.join(base, 'owned.txt'), path.join(base, 'owned-hardlink')])
    await runCliOk('mkfifo', [path.join(base, 'fifo')])
    await runCliOk('mknod', [path.join(base, 'null-dev'), 'c', '1', '3'])
    await runCliOk('setfattr', ['-n', 'user.s0test', '-v', 'kept', path.join(base, 'owned.txt')])
    await reg.push('s0test/one', 'v1', base, 'image-one')
    await reg.push('s0test/two', 'v1', base, 'image-two')
  })

  afterAll(async () => {
    await server?.close()
    if (!regClosed) await reg?.close()
    if (work) await rm(work, { recursive: true, force: true })
  })

  async function build(id: string, image: string): Promise<string> {
    await client.templates.create({ templateId: id, spec: spec(image) } as never)
    const t = await client.templates.waitUntilReady(id, { timeoutMs: 120_000, pollIntervalMs: 100 })
    const digest = (t.status?.creation?.outputImage ?? '').split('@')[1] ?? ''
    expect(digest).toMatch(/^sha256:[0-9a-f]{64}$/)
    return digest
  }

  const unpacked = (digest: string): string =>
    path.join(server.imagesDir, 'rootfs', digest.slice('sha256:'.length))

  it('imports a pulled image; a second image with the same content adds almost no chunk bytes', async () => {
    const before = await chunkBytes(server)
    digests['one'] = await build('img-one', `${reg.host}/s0test/one:v1`)
    const afterOne = await chunkBytes(server)
    digests['two'] = await build('img-two', `${reg.host}/s0test/two:v1`)
    const afterTwo = await chunkBytes(server)

    const { rows } = await server.t.tdb.db.query<{
      digest: string
      bytes: string
      team_id: string
      kind: string
    }>(
      `SELECT i.digest, i.bytes, v.team_id, v.kind FROM image_volumes i JOIN volumes v ON v.id = i.volume_id
        ORDER BY i.created_at`,
    )
    expect(rows.map((r) => r.digest)).toEqual([digests['one'], digests['two']])
    for (const r of rows)
      expect({ team: r.team_id, kind: r.kind }).toEqual({ team: 's0-images', kind: 'rootfs' })
    const imageBytes = Number(rows[1]?.bytes)
    // The first import stored the busybox binary's chunks; the second found them all stored.
    expect(afterOne - before).toBeGreaterThan(imageBytes / 2)
    expect(afterTwo - afterOne).toBeLessThan(imageBytes / 20)
  })

  it('a host without the unpacked image, the OCI layout and the registry materializes it from the chunk store', async () => {
    const digest = digests['one'] as string
    const original = await describeTree(path.join(unpacked(digest), 'rootfs'))
    await rm(unpacked(digest), { recursive: true, force: true })
    await rm(path.join(server.imagesDir, 'oci'), { recursive: true, force: true })
    await reg.close()
    regClosed = true

    const sandbox = await client.sandboxes.claim('img-one')
    expect((await sandbox.cmd('cat /marker.txt')).stdout).toBe('image-one\n')
    expect((await sandbox.cmd('cat /marker-link')).stdout).toBe('image-one\n')
    expect((await sandbox.cmd('stat -c "%a %u %g" /suid-tool /owned.txt /empty-dir')).stdout).toBe(
      '4755 0 0\n640 1234 2345\n750 1000 1000\n',
    )
    await client.sandboxes.delete(sandbox.id)

    const root = path.join(unpacked(digest), 'rootfs')
    const back = await describeTree(root)
    expect(back).toEqual(original)
    // The round trip in particular (describeTree compares everything; these say what matters).
    expect((await lstat(path.join(root, 'suid-tool'))).mode & 0o7777).toBe(0o4755)
    expect(await readlink(path.join(root, 'marker-link'))).toBe('marker.txt')
    const owned = await lstat(path.join(root, 'owned.txt'))
    expect([owned.uid, owned.gid, owned.mode & 0o7777, owned.nlink]).toEqual([1234, 2345, 0o640, 2])
    expect((await lstat(path.join(root, 'owned-hardlink'))).ino).toBe(owned.ino)
    expect(await readdir(path.join(root, 'empty-dir'))).toEqual([])
    expect((await lstat(path.join(root, 'fifo'))).isFIFO()).toBe(true)
    const dev = await lstat(path.join(root, 'null-dev'))
    expect([dev.isCharacterDevice(), dev.rdev]).toEqual([true, (await lstat('/dev/null')).rdev])
    expect(original['<xattrs>']).toContain('user.s0test="kept"')
    // No half-made directory is left beside it.
    expect((await readdir(path.join(server.imagesDir, 'rootfs'))).filter((n) => n.startsWith('.'))).toEqual(
      [],
    )
  })

  it('the orphan sweep spares image volumes a template names and drops them once none does', async () => {
    const { rows } = await server.t.tdb.db.query<{ digest: string; volume_id: string }>(
      'SELECT digest, volume_id FROM image_volumes',
    )
    const volumeOf = (d: string): string => rows.find((r) => r.digest === d)?.volume_id ?? ''
    const engine = new VolumeEngine({ db: server.t.tdb.db, chunks: server.t.store, log: silentLogger })
    const mounts = new MountManager({ engine, log: silentLogger, rootDir: path.join(work, 'mounts') })
    const checkpoints = new Checkpoints({ db: server.t.tdb.db, mounts, log: silentLogger })
    try {
      let swept = await checkpoints.sweepOrphans(0)
      expect(swept).not.toContain(volumeOf(digests['one'] as string))
      expect(swept).not.toContain(volumeOf(digests['two'] as string))

      await client.templates.delete('img-one')
      swept = await checkpoints.sweepOrphans(0)
      expect(swept).toContain(volumeOf(digests['one'] as string))
      expect(swept).not.toContain(volumeOf(digests['two'] as string))
      const left = await server.t.tdb.db.query<{ digest: string }>('SELECT digest FROM image_volumes')
      expect(left.rows.map((r) => r.digest)).toEqual([digests['two']])
      const vols = await server.t.tdb.db.query('SELECT 1 FROM volumes WHERE id = $1', [
        volumeOf(digests['one'] as string),
      ])
      expect(vols.rowCount).toBe(0)
    } finally {
      await mounts.close()
      await engine.close()
    }
  })
})
