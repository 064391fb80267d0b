// The volume methods of the official SDK (npm sandbox0@0.9.5), unchanged: create, files,
// snapshots, restore, fork, another team's 404, bad input, the OpenAPI document and watches. Run
// against one server (volumes-sdk.test.ts) and through a cluster's replica, whose agents serve
// each volume on the node that holds its writer lease (cluster.test.ts).
import { randomBytes } from 'node:crypto'
import { APIError, Client } from 'sandbox0'
import { beforeAll, describe, expect, it } from 'vitest'
import { createApiKey } from '../../src/accounts/index.js'
import type { Db } from '../../src/core/db.js'
import { asTeamId } from '../../src/core/ids.js'
import { prng } from '../support/store.js'

/** Where the cases run: a server's (or replica's) URL, a key of one team, and its database. */
export type VolumeCaseTarget = () => { url: string; token: string; db: Db } | undefined

let client: Client
let baseUrl: string
let token: string
let db: Db
let skip = false

export function volumesSdkCases(target: VolumeCaseTarget): void {
  describe('sandbox0 SDK 0.9.5: volumes', () => {
    beforeAll(() => {
      const t = target()
      if (!t) {
        skip = true
        return
      }
      token = t.token
      db = t.db
      baseUrl = t.url + '/' // a trailing slash: the SDK then sends //api/v1/..., which must work
      client = new Client({ token, baseUrl })
    })
    it('creates, lists, gets and deletes volumes', async () => {
      const v = await client.volumes.create({})
      expect(v.id).toMatch(/^[0-9a-f-]{36}$/)
      expect(v.backend).toBe('s0fs')
      expect((await client.volumes.list()).map((x) => x.id)).toContain(v.id)
      expect((await client.volumes.get(v.id)).id).toBe(v.id)
      await client.volumes.delete(v.id)
      const err = await client.volumes.get(v.id).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(APIError)
      expect((err as APIError).statusCode).toBe(404)
      expect((err as APIError).code).toBe('not_found')
    })

    it('writes, reads, lists, stats, moves and deletes files', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const v = await client.volumes.create({ defaultPosixUid: 1000, defaultPosixGid: 1000 })
      const big = prng(5 * 1024 * 1024 + 3, 1)
      await client.volumes.writeFile(v.id, '/src/deep/big.bin', big)
      await client.volumes.writeFile(v.id, '/src/hello.txt', 'hello world')
      expect(Buffer.from(await client.volumes.readFile(v.id, '/src/deep/big.bin')).equals(big)).toBe(true)
      expect(Buffer.from(await client.volumes.readFile(v.id, 'src/hello.txt')).toString()).toBe('hello world')
      await client.volumes.mkdir(v.id, '/src/a/b/c', true)
      const list = await client.volumes.listFiles(v.id, '/src')
      expect(list.map((f) => `${f.name}:${f.type}`).sort()).toEqual(['a:dir', 'deep:dir', 'hello.txt:file'])
      expect((await client.volumes.get(v.id)).defaultPosixUid).toBe(1000)
      const st = await client.volumes.statFile(v.id, '/src/hello.txt')
      expect(st.size).toBe(11)
      expect(st.mode).toBe('0644')
      await client.volumes.moveFile(v.id, '/src/hello.txt', '/src/a/hi.txt')
      expect(Buffer.from(await client.volumes.readFile(v.id, '/src/a/hi.txt')).toString()).toBe('hello world')
      await client.volumes.deleteFile(v.id, '/src/a')
      const gone = await client.volumes.statFile(v.id, '/src/a/hi.txt').catch((e: unknown) => e)
      expect((gone as APIError).statusCode).toBe(404)
      const dirErr = await client.volumes.writeFile(v.id, '/src/deep', 'x').catch((e: unknown) => e)
      expect((dirErr as APIError).code).toBe('path_not_file')
      const trav = await client.volumes.readFile(v.id, '/../etc/passwd').catch((e: unknown) => e)
      expect((trav as APIError).statusCode).toBe(400)
    })

    it('snapshots, restores and forks', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const v = await client.volumes.create({})
      await client.volumes.writeFile(v.id, '/state.txt', 'v1')
      const snap = await client.volumes.createSnapshot(v.id, { name: 'before' })
      expect(snap.name).toBe('before')
      expect((await client.volumes.listSnapshots(v.id)).map((s) => s.id)).toEqual([snap.id])
      expect((await client.volumes.getSnapshot(v.id, snap.id)).id).toBe(snap.id)
      await client.volumes.writeFile(v.id, '/state.txt', 'v2')
      await client.volumes.writeFile(v.id, '/extra.txt', 'x')

      const fork = await client.volumes.fork(v.id)
      expect(fork.sourceVolumeId).toBe(v.id)
      await client.volumes.restoreSnapshot(v.id, snap.id)
      expect(Buffer.from(await client.volumes.readFile(v.id, '/state.txt')).toString()).toBe('v1')
      expect(
        ((await client.volumes.statFile(v.id, '/extra.txt').catch((e: unknown) => e)) as APIError).statusCode,
      ).toBe(404)
      expect(Buffer.from(await client.volumes.readFile(fork.id, '/state.txt')).toString()).toBe('v2')
      await client.volumes.writeFile(fork.id, '/state.txt', 'fork')
      expect(Buffer.from(await client.volumes.readFile(v.id, '/state.txt')).toString()).toBe('v1')

      // A new volume from the snapshot, then delete the snapshot and the source: the others live on.
      const fromSnap = await client.volumes.create({ snapshotId: snap.id })
      await client.volumes.deleteSnapshot(v.id, snap.id)
      await client.volumes.delete(v.id)
      expect(Buffer.from(await client.volumes.readFile(fromSnap.id, '/state.txt')).toString()).toBe('v1')
      expect(Buffer.from(await client.volumes.readFile(fork.id, '/state.txt')).toString()).toBe('fork')
    })

    it("another team's volume is a 404, and bad input is a clear 400", async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const v = await client.volumes.create({})
      const team = `team-other-${randomBytes(4).toString('hex')}`
      await db.query(`INSERT INTO teams (id, name) VALUES ($1, 'other')`, [team])
      const { key } = await createApiKey(db, {
        teamId: asTeamId(team),
        name: 'other',
        role: 'admin',
      })
      const other = new Client({ token: key, baseUrl })
      const calls = [
        () => other.volumes.get(v.id),
        () => other.volumes.readFile(v.id, '/x'),
        () => other.volumes.createSnapshot(v.id, { name: 's' }),
      ]
      for (const call of calls) {
        const err = (await call().catch((e: unknown) => e)) as APIError
        expect([err.statusCode, err.code]).toEqual([404, 'not_found'])
      }
      expect(await other.volumes.list()).toEqual([])
      const anon = new Client({ token: 's0_' + 'A'.repeat(43), baseUrl })
      expect(((await anon.volumes.get(v.id).catch((e: unknown) => e)) as APIError).statusCode).toBe(401)
      const res = await fetch(`${baseUrl}api/v1/sandboxvolumes`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ unknown_field: 1 }),
      })
      expect(res.status).toBe(400)
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe('bad_request')
      const bad = await fetch(`${baseUrl}api/v1/sandboxvolumes/${v.id}/snapshots`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: '{not json',
      })
      expect(bad.status).toBe(400)
      const longName = await client.volumes
        .writeFile(v.id, '/' + 'n'.repeat(256), 'x')
        .catch((e: unknown) => e)
      expect((longName as APIError).code).toBe('name_too_long')
      const nul = await fetch(`${baseUrl}api/v1/sandboxvolumes/${v.id}/files/stat?path=/a%00b`, {
        headers: { authorization: `Bearer ${token}` },
      })
      expect([nul.status, ((await nul.json()) as { error: { code: string } }).error.code]).toEqual([
        400,
        'invalid_path',
      ])
      const extra = await fetch(`${baseUrl}api/v1/sandboxvolumes/${v.id}/files/stat?path=/a&evil=1`, {
        headers: { authorization: `Bearer ${token}` },
      })
      expect(extra.status).toBe(400)
      const huge = await fetch(`${baseUrl}api/v1/sandboxvolumes/${v.id}/snapshots`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'x'.repeat(65 * 1024 * 1024) }),
      })
      expect(huge.status).toBe(413)
      expect(await client.volumes.listFiles(v.id, '/')).toEqual([])
      expect(await client.volumes.listSnapshots(v.id)).toEqual([])
    })

    it('serves an OpenAPI document that lists the volume routes with their schemas', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const doc = (await (await fetch(`${baseUrl}openapi.json`)).json()) as {
        openapi: string
        paths: Record<string, Record<string, { parameters: Array<{ name: string }> }>>
      }
      expect(doc.openapi).toBe('3.1.0')
      expect(Object.keys(doc.paths)).toContain('/api/v1/sandboxvolumes/{id}/snapshots/{snapshot_id}/restore')
      expect(doc.paths['/api/v1/sandboxvolumes/{id}/files']?.['get']?.parameters.map((p) => p.name)).toEqual([
        'id',
        'path',
        'mkdir',
        'recursive',
      ])
    })

    it('watches file changes over a WebSocket', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const v = await client.volumes.create({})
      await client.volumes.mkdir(v.id, '/w/sub', true)
      const stream = await client.volumes.watchFiles(v.id, '/w', true)
      const seen: string[] = []
      const done = (async () => {
        for await (const ev of stream.events()) {
          if (ev.type === 'event') seen.push(`${ev.event} ${ev.path}`)
          if (seen.some((s) => s.startsWith('remove /w/sub/b.txt'))) break
        }
      })()
      await client.volumes.writeFile(v.id, '/w/a.txt', 'a')
      await client.volumes.writeFile(v.id, '/outside.txt', 'not watched')
      await client.volumes.writeFile(v.id, '/w/sub/b.txt', 'b')
      await client.volumes.deleteFile(v.id, '/w/sub/b.txt')
      await Promise.race([
        done,
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error(`events so far: ${seen.join(', ')}`)), 10_000),
        ),
      ])
      stream.close()
      expect(seen).toContain('create /w/a.txt')
      expect(seen).toContain('create /w/sub/b.txt')
      expect(seen).toContain('remove /w/sub/b.txt')
      expect(seen.some((s) => s.includes('outside'))).toBe(false)
      expect(seen.some((s) => s.includes('.s0-upload-'))).toBe(true) // the atomic write's temp file shows, as on a real FS
    })
  })
}
