// Sandboxes II end to end with the official SDK (sandbox0@0.9.5), unchanged: a volume mounted at
// claim survives pauseAndWait / resumeAndWait with the root file system and the REPL coming back
// in a new runtime generation; rootfs snapshot → write → restore gives the old content; fork
// makes a paused child that diverges from its parent; claims from a snapshot (also after its
// seed sandbox is gone); deleting a snapshot breaks nothing made from it; bad requests.
// Run against one server (sandboxes-lifecycle-sdk.test.ts) and through a cluster's replicas,
// where a fork, a snapshot and a claim from it may each land on another node (cluster.test.ts).
import { Client } from 'sandbox0'
import { beforeAll, describe, expect, it } from 'vitest'
import { apiCall } from './sandbox-fixture.js'

/** Where the cases send their calls; undefined: the caller skips them (a missing prerequisite). */
export type CaseTarget = () => { url: string; token: string } | undefined

let server: { url: string; token: string }
let client: Client
let skip = false

const api = (method: string, path: string, body?: unknown): ReturnType<typeof apiCall> =>
  apiCall(server, method, path, body)

const quick = { timeoutMs: 60_000, pollIntervalMs: 100 }

export function lifecycleSdkCases(target: CaseTarget): void {
  describe('sandbox0 SDK 0.9.5: pause, resume, snapshots, fork, restore', () => {
    beforeAll(() => {
      const t = target()
      if (!t) {
        skip = true
        return
      }
      server = t
      client = new Client({ token: t.token, baseUrl: t.url })
    })

    it('keeps a mounted volume, the root file system and a working REPL across pause and resume', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const volume = await client.volumes.create({})
      const sb = await client.sandboxes.claim('default', {
        mounts: [{ sandboxvolumeId: volume.id, mountPoint: '/workspace/data' }],
      })
      expect(sb.bootstrapMounts).toMatchObject([{ sandboxvolumeId: volume.id, state: 'mounted' }])
      await sb.cmd(
        `sh -c 'echo in-volume > /workspace/data/v.txt; mkdir -p /srv/app; echo in-root > /srv/app/r.txt'`,
      )
      await sb.cmd(`sh -c 'rm /etc/motd; echo tmp > /tmp/t.txt'`) // a template file deleted; /tmp is not kept
      expect((await sb.run('python', 'x = 41\nprint(x + 1)')).outputRaw).toBe('42\n')
      const before = await client.sandboxes.get(sb.id)

      const paused = await client.sandboxes.pauseAndWait(sb.id, quick)
      expect(paused.status).toBe('paused')
      expect(paused.paused).toBe(true)
      // While paused the volume is free again, its data kept.
      expect(new TextDecoder().decode(await client.volumes.readFile(volume.id, '/v.txt'))).toBe('in-volume\n')
      expect((await api('GET', `/sandboxvolumes/${volume.id}/mounts`)).json.data).toEqual([])

      const resumed = await client.sandboxes.resumeAndWait(sb.id, quick)
      expect(resumed.status).toBe('running')
      expect(resumed.runtimeGeneration).toBe(before.runtimeGeneration + 1)
      const again = client.sandbox(sb.id) // the old handle's REPL context belongs to the old generation
      const files = await again.cmd(
        `sh -c 'cat /workspace/data/v.txt /srv/app/r.txt; test -e /etc/motd || echo motd-gone; ls /tmp; echo more >> /srv/app/r.txt'`,
      )
      expect(files.stdout).toBe('in-volume\nin-root\nmotd-gone\n')
      expect((await again.run('python', 'print(6 * 7)')).outputRaw).toBe('42\n')
      expect((await sb.run('python', 'print(x)').catch((e: Error) => e)) instanceof Error).toBe(true)

      // A second cycle stacks the checkpoints: both generations' changes come back.
      await client.sandboxes.pauseAndWait(sb.id, quick)
      await client.sandboxes.resumeAndWait(sb.id, quick)
      expect((await client.sandbox(sb.id).cmd('cat /srv/app/r.txt')).stdout).toBe('in-root\nmore\n')
      await client.sandboxes.delete(sb.id)
      await client.volumes.delete(volume.id)
    }, 240_000)

    it('snapshots a running sandbox, restores it onto the paused sandbox, forks, and claims from a snapshot', async ({
      skip: skipTest,
    }) => {
      if (skip) skipTest()
      const sb = await client.sandboxes.claim('busybox')
      await sb.cmd(`sh -c 'mkdir -p /work; echo v1 > /work/state.txt'`)
      const snap = await client.sandboxes.createRootFSSnapshot(sb.id, { name: 'v1', description: 'first' })
      expect(snap.id).toMatch(/^rootfs-snapshot-[a-z0-9]{10}$/)
      expect(snap.sandboxId).toBe(sb.id)
      expect(snap.name).toBe('v1')
      // The sandbox went on running through the snapshot.
      await sb.cmd(`sh -c 'echo v2 > /work/state.txt; echo new > /work/after.txt'`)
      expect((await client.sandboxes.listRootFSSnapshots(sb.id)).map((s) => s.id)).toEqual([snap.id])
      expect((await client.sandboxes.getRootFSSnapshot(snap.id)).description).toBe('first')

      // Restore needs a paused target.
      expect((await api('POST', `/sandboxes/${sb.id}/rootfs/restore`, { snapshot_id: snap.id })).status).toBe(
        409,
      )
      await client.sandboxes.pauseAndWait(sb.id, quick)
      const restored = await client.sandboxes.restoreRootFS(sb.id, { snapshotId: snap.id })
      expect(restored.status).toBe('paused')
      await client.sandboxes.resumeAndWait(sb.id, quick)
      const back = await client.sandbox(sb.id).cmd(`sh -c 'cat /work/state.txt; ls /work'`)
      expect(back.stdout).toBe('v1\nstate.txt\n')

      // Fork: a paused child with the parent's files, then each goes its own way.
      const forked = await client.sandboxes.fork(sb.id, { config: { ttl: 0, hardTtl: 3600 } })
      expect(forked.sourceSandboxId).toBe(sb.id)
      expect(forked.sandbox.status).toBe('paused')
      expect(forked.sandbox.paused).toBe(true)
      expect(forked.sandbox.templateId).toBe('busybox')
      const childId = forked.sandbox.id
      await client.sandboxes.resumeAndWait(childId, quick)
      const child = client.sandbox(childId)
      const parent = client.sandbox(sb.id)
      await child.cmd(`sh -c 'echo child > /work/state.txt; echo c > /work/only-child'`)
      await parent.cmd(`sh -c 'echo parent > /work/state.txt; rm -f /work/only-child'`)
      expect((await child.cmd(`sh -c 'cat /work/state.txt /work/only-child'`)).stdout).toBe('child\nc\n')
      expect((await parent.cmd(`sh -c 'cat /work/state.txt; ls /work'`)).stdout).toBe('parent\nstate.txt\n')

      // A snapshot outlives its sandbox ("prepare once, claim many"); deleting it breaks nothing.
      const seed = await client.sandboxes.createRootFSSnapshot(childId)
      await client.sandboxes.delete(childId)
      expect((await client.sandboxes.listRootFSSnapshots(childId)).map((s) => s.id)).toEqual([seed.id])
      const fromSnap = await client.sandboxes.claim('busybox', { snapshotId: seed.id })
      expect(fromSnap.status).toBe('running')
      expect((await fromSnap.cmd('cat /work/only-child')).stdout).toBe('c\n')
      await client.sandboxes.deleteRootFSSnapshot(seed.id)
      await client.sandboxes.deleteRootFSSnapshot(snap.id)
      expect((await api('GET', `/sandbox-rootfs-snapshots/${seed.id}`)).status).toBe(404)
      await client.sandboxes.pauseAndWait(fromSnap.id, quick)
      await client.sandboxes.resumeAndWait(fromSnap.id, quick)
      expect((await client.sandbox(fromSnap.id).cmd('cat /work/only-child /work/state.txt')).stdout).toBe(
        'c\nchild\n',
      )
      await client.sandboxes.pauseAndWait(sb.id, quick)
      await client.sandboxes.resumeAndWait(sb.id, quick)
      expect((await client.sandbox(sb.id).cmd('cat /work/state.txt')).stdout).toBe('parent\n')
      await client.sandboxes.delete(fromSnap.id)
      await client.sandboxes.delete(sb.id)
    }, 240_000)

    it('refuses lifecycle requests that cannot be served, with clear errors', async ({ skip: skipTest }) => {
      if (skip) skipTest()
      const sb = await client.sandboxes.claim('busybox')
      expect((await api('POST', `/sandboxes/${sb.id}/resume`)).json.data).toEqual({
        sandbox_id: sb.id,
        resumed: true,
      })
      expect((await api('POST', `/sandboxes/${sb.id}/rootfs/restore`, {})).status).toBe(400)
      expect((await api('POST', `/sandboxes/${sb.id}/rootfs/restore`, { snapshot_id: 'nope' })).status).toBe(
        409,
      )
      expect((await api('POST', `/sandboxes/${sb.id}/fork`, { config: { ttl: -1 } })).status).toBe(400)
      expect((await api('POST', `/sandboxes/${sb.id}/snapshots`, { name: 'x', extra: 1 })).status).toBe(400)
      expect((await api('GET', `/sandbox-rootfs-snapshots/not-a-snapshot`)).json.error.code).toBe('not_found')
      expect((await api('POST', `/sandboxes/${sb.id}/pause?keep_memory=maybe`)).status).toBe(400)
      // runc cannot keep process memory on this kernel with Debian's CRIU: a clear refusal.
      const mem = await api('POST', `/sandboxes/${sb.id}/pause?keep_memory=true`)
      expect(mem.status).toBe(501)
      expect(mem.json.error.message).toMatch(/cannot keep process memory/)
      expect((await client.sandboxes.get(sb.id)).status).toBe('running')
      // An unknown sandbox is a 404.
      expect((await api('POST', `/sandboxes/sb-000000000000/pause`)).status).toBe(404)
      await client.sandboxes.delete(sb.id)
    }, 60_000)
  })
}
