// The one contract every MetadataStore passes (today: Postgres). A model-based property drives
// random row changes, snapshots, forks, restores, flattens and deletes through the interface and
// compares every read with a tiny in-memory model; fast-check prints a seed and path to replay
// (S0_PBT_SEED / S0_PBT_PATH). Fixed cases cover leases, inode numbers and catalogue errors.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { isS0Error, type ErrorCode } from '../../src/core/errors.js'
import { newTeamId, type TeamId, type Ino, type LayerId } from '../../src/core/ids.js'
import type { Extent } from '../../src/snapshots/extents.js'
import type { MetadataStore } from '../../src/snapshots/metadata-store.js'
import { ROOT_INO, S_IFDIR, S_IFLNK, S_IFREG, type DirEntry, type Inode } from '../../src/snapshots/types.js'

export interface PbtParams {
  numRuns: number
  ops: number
  seed?: number
  path?: string
}

/** Property-test size and replay parameters from the environment (npm run test:long). */
export function pbtParams(defaults: { runs: number; ops: number }): PbtParams {
  const env = process.env
  return {
    numRuns: Number(env['S0_PBT_RUNS'] ?? defaults.runs),
    ops: Number(env['S0_PBT_OPS'] ?? defaults.ops),
    ...(env['S0_PBT_SEED'] ? { seed: Number(env['S0_PBT_SEED']) } : {}),
    ...(env['S0_PBT_PATH'] ? { path: env['S0_PBT_PATH'] } : {}),
  }
}

const INOS = [1, 2, 3, 4, 5, 6].map((n) => n as Ino)
const PARENTS = [1, 2].map((n) => n as Ino)
const NAMES = ['a', 'b', 'c', 'dd'].map((s) => Buffer.from(s))

type Write =
  | { k: 'put'; ino: Ino; kind: number; seed: number; size: number; times: bigint; xattr: boolean }
  | { k: 'del'; ino: Ino }
  | { k: 'link'; parent: Ino; name: number; ino: Ino; kind: number }
  | { k: 'whiteout'; parent: Ino; name: number }

type Op =
  | { k: 'change'; v: number; writes: Write[]; split: number; bytes: number; inodes: number }
  | { k: 'alloc'; v: number; count: number }
  | { k: 'snapshot'; v: number }
  | { k: 'fork'; v: number }
  | { k: 'restore'; v: number; s: number }
  | { k: 'fromSnapshot'; s: number }
  | { k: 'deleteVolume'; v: number }
  | { k: 'deleteSnapshot'; s: number }
  | { k: 'flatten'; v: number; keep: number }
  | { k: 'sync'; v: number }

const pick = <T>(xs: readonly T[]): fc.Arbitrary<T> => fc.constantFrom(...xs)
const writeArb: fc.Arbitrary<Write> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('put' as const),
      ino: pick(INOS),
      kind: fc.integer({ min: 0, max: 2 }),
      seed: fc.nat(),
      size: fc.nat({ max: 1 << 30 }),
      times: fc.bigInt({ min: 0n, max: (1n << 62n) - 1n }),
      xattr: fc.boolean(),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('del' as const), ino: pick(INOS) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      k: fc.constant('link' as const),
      parent: pick(PARENTS),
      name: fc.nat({ max: NAMES.length - 1 }),
      ino: pick(INOS),
      kind: fc.integer({ min: 0, max: 15 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('whiteout' as const),
      parent: pick(PARENTS),
      name: fc.nat({ max: NAMES.length - 1 }),
    }),
  },
)
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      k: fc.constant('change' as const),
      v: fc.nat(),
      writes: fc.array(writeArb, { minLength: 0, maxLength: 6 }),
      split: fc.nat({ max: 6 }),
      bytes: fc.nat({ max: 1e12 }),
      inodes: fc.nat({ max: 1e6 }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      k: fc.constant('alloc' as const),
      v: fc.nat(),
      count: fc.integer({ min: 1, max: 300 }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('snapshot' as const), v: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('fork' as const), v: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ k: fc.constant('restore' as const), v: fc.nat(), s: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('fromSnapshot' as const), s: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('deleteVolume' as const), v: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('deleteSnapshot' as const), s: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      k: fc.constant('flatten' as const),
      v: fc.nat(),
      keep: fc.integer({ min: 1, max: 3 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('sync' as const), v: fc.nat() }) },
)

/** What a chain shows: inodes by number, names by `parent:hex(name)`. */
interface Tree {
  inodes: Map<Ino, Inode>
  entries: Map<string, DirEntry & { parent: Ino }>
}
interface Usage {
  bytes: number
  inodes: number
}
interface ModelVolume {
  id: string
  tree: Tree
  usage: Usage
  nextIno: number
}
interface ModelSnapshot {
  id: string
  volumeId: string
  layerId: LayerId
  tree: Tree
  usage: Usage
  nextIno: number
}

const copyTree = (t: Tree): Tree => ({ inodes: new Map(t.inodes), entries: new Map(t.entries) })
const entryKey = (parent: Ino, name: Buffer): string => `${parent}:${name.toString('hex')}`

function hashOf(seed: number, k: number): Buffer {
  const h = Buffer.alloc(32, k)
  h.writeUInt32LE(seed >>> 0, 0)
  return h
}

function inodeOf(w: Extract<Write, { k: 'put' }>): Inode {
  const mode = [S_IFREG | 0o644, S_IFDIR | 0o755, S_IFLNK | 0o777][w.kind] as number
  const extents: Extent[] =
    w.kind === 0
      ? Array.from({ length: w.seed % 3 }, (_, k) => ({
          off: k * 100,
          len: 100,
          hash: hashOf(w.seed, k),
          coff: k,
        }))
      : []
  return {
    ino: w.ino,
    mode,
    uid: w.seed % 65_536,
    gid: (w.seed >>> 16) % 65_536,
    nlink: 1 + (w.seed % 5),
    size: w.size,
    rdev: 0,
    parentIno: w.kind === 1 ? ROOT_INO : w.seed % 2 === 0 ? null : (2 as Ino),
    atimeNs: w.times,
    mtimeNs: w.times / 2n,
    ctimeNs: w.times / 3n,
    target: w.kind === 2 ? Buffer.from(`target-${w.seed}`) : null,
    xattrs: w.xattr ? new Map([[`user.k${w.seed % 3}`, hashOf(w.seed, 9).subarray(0, 5)]]) : new Map(),
    extents,
    // Some extent-less files hold their bytes inline (never both).
    inline:
      w.kind === 0 && extents.length === 0 && w.seed % 2 === 0
        ? hashOf(w.seed, 7).subarray(0, 1 + (w.seed % 32))
        : null,
  }
}

async function code(p: Promise<unknown>): Promise<ErrorCode | 'ok'> {
  try {
    await p
    return 'ok'
  } catch (err) {
    if (isS0Error(err)) return err.code
    throw err
  }
}

async function headChain(store: MetadataStore, team: TeamId, volumeId: string): Promise<LayerId[]> {
  return store.catalog.chainOf((await store.catalog.get(team, volumeId)).headLayerId)
}

/** Every read of the interface over `chain` agrees with `tree`. */
async function expectTree(store: MetadataStore, chain: LayerId[], tree: Tree, where: string): Promise<void> {
  for (const ino of INOS)
    expect(await store.readInode(chain, ino), `${where}: inode ${ino}`).toEqual(tree.inodes.get(ino))
  for (const parent of PARENTS) {
    for (const name of NAMES) {
      const want = tree.entries.get(entryKey(parent, name))?.ino ?? 0
      expect(await store.lookupEntry(chain, parent, name), `${where}: ${parent}/${name}`).toBe(want)
    }
    const listed = [...tree.entries.values()]
      .filter((e) => e.parent === parent)
      .sort((a, b) => Buffer.compare(a.name, b.name))
      .map((e) => ({ name: e.name, ino: e.ino, kind: e.kind }))
    // Two entries a page: the cursor is exercised on every directory with more than two names.
    const paged: DirEntry[] = []
    for (let after: Buffer | null = null; ;) {
      const page = await store.listEntries(chain, parent, after, 2)
      paged.push(...page)
      if (page.length < 2) break
      after = (page[1] as DirEntry).name
    }
    expect(paged, `${where}: listing of ${parent}`).toEqual(listed)
    expect(await store.hasEntries(chain, parent)).toBe(listed.length > 0)
    for (const ino of INOS) {
      const names = listed.filter((e) => e.ino === ino).map((e) => e.name.toString('hex'))
      const got = await store.nameOf(chain, parent, ino)
      if (names.length === 0) expect(got, `${where}: name of ${ino} in ${parent}`).toBeNull()
      else expect(names, `${where}: name of ${ino} in ${parent}`).toContain(got?.toString('hex'))
    }
  }
}

async function reachableOf(store: MetadataStore, team: TeamId): Promise<Set<string>> {
  const out = new Set<string>()
  for await (const b of store.reachableChunks())
    if (b.teamId === team) for (const h of b.hashes) out.add(h.toString('hex'))
  return out
}

async function runScenario(store: MetadataStore, ops: Op[]): Promise<void> {
  const team = newTeamId()
  const { catalog } = store
  const vols: ModelVolume[] = []
  const snaps: ModelSnapshot[] = []

  const newVolume = async (): Promise<ModelVolume> => {
    const row = await catalog.create(team)
    const chain = await headChain(store, team, row.id)
    const root = (await store.readInode(chain, ROOT_INO)) as Inode
    expect(root.mode & 0o170000).toBe(S_IFDIR)
    expect(root.nlink).toBe(2)
    expect([row.usedBytes, row.usedInodes, row.nextIno]).toEqual([0, 1, ROOT_INO + 1])
    const v = {
      id: row.id,
      tree: { inodes: new Map([[ROOT_INO, root]]), entries: new Map() },
      usage: { bytes: 0, inodes: 1 },
      nextIno: row.nextIno,
    }
    vols.push(v)
    return v
  }
  const checkVolume = async (v: ModelVolume, where: string): Promise<void> => {
    const row = await catalog.get(team, v.id)
    expect([row.usedBytes, row.usedInodes, row.nextIno], `${where}: usage`).toEqual([
      v.usage.bytes,
      v.usage.inodes,
      v.nextIno,
    ])
    await expectTree(store, await catalog.chainOf(row.headLayerId), v.tree, where)
  }
  const checkSnapshot = async (s: ModelSnapshot, where: string): Promise<void> => {
    const row = await catalog.getSnapshot(team, s.volumeId, s.id)
    expect([row.layerId, row.sizeBytes, row.inodes], `${where}: row`).toEqual([
      s.layerId,
      s.usage.bytes,
      s.usage.inodes,
    ])
    await expectTree(store, await catalog.chainOf(s.layerId), s.tree, where)
  }

  await newVolume()
  try {
    for (const [step, op] of ops.entries()) {
      const where = `step ${step} ${op.k}`
      const vol = 'v' in op ? (vols[op.v % vols.length] as ModelVolume) : undefined
      const snap = 's' in op && snaps.length > 0 ? snaps[op.s % snaps.length] : undefined
      switch (op.k) {
        case 'change': {
          const v = vol as ModelVolume
          // Two batches merged with absorb (the commit queue's grouping) whenever split falls inside.
          const first = store.newBatch()
          const second = store.newBatch()
          op.writes.forEach((w, k) => {
            const b = k < op.split ? first : second
            if (w.k === 'put') {
              const i = inodeOf(w)
              b.putInode(i)
              v.tree.inodes.set(w.ino, i)
            } else if (w.k === 'del') {
              b.deleteInode(w.ino)
              v.tree.inodes.delete(w.ino)
            } else if (w.k === 'link') {
              const name = NAMES[w.name] as Buffer
              b.putEntry(w.parent, name, w.ino, w.kind)
              v.tree.entries.set(entryKey(w.parent, name), {
                parent: w.parent,
                name,
                ino: w.ino,
                kind: w.kind,
              })
            } else {
              const name = NAMES[w.name] as Buffer
              b.putEntry(w.parent, name, null, 0)
              v.tree.entries.delete(entryKey(w.parent, name))
            }
          })
          expect(first.empty).toBe(Math.min(op.split, op.writes.length) === 0)
          first.absorb(second)
          v.usage = { bytes: op.bytes, inodes: op.inodes }
          const head = (await catalog.get(team, v.id)).headLayerId
          await store.commit(first, head, { id: v.id, usedBytes: op.bytes, usedInodes: op.inodes })
          // The packer's work list: the head's inline rows, each the newest version of its inode.
          const inline = await store.inlineFiles(head, 0, 1_000)
          for (const f of inline) expect(v.tree.inodes.get(f.ino)?.inline, `inline ${f.ino}`).toEqual(f.bytes)
          const listedInline = new Set(inline.map((f) => f.ino))
          for (const w of op.writes) {
            if (w.k === 'put' && v.tree.inodes.get(w.ino)?.inline)
              expect(listedInline.has(w.ino), `inline ${w.ino} listed`).toBe(true)
          }
          await checkVolume(v, where)
          break
        }
        case 'alloc': {
          const v = vol as ModelVolume
          const [a, b] = await Promise.all([
            store.allocInodes(v.id, op.count),
            store.allocInodes(v.id, op.count),
          ])
          expect(
            [a, b].sort((x, y) => x - y),
            where,
          ).toEqual([v.nextIno, v.nextIno + op.count])
          v.nextIno += 2 * op.count
          break
        }
        case 'snapshot': {
          const v = vol as ModelVolume
          const before = await headChain(store, team, v.id)
          const row = await catalog.snapshot(team, v.id, { name: `s${step}` })
          const after = await headChain(store, team, v.id)
          // O(1): the old head is sealed under a new empty head, nothing else moves.
          expect(row.layerId).toBe(before[0])
          expect(after.slice(1)).toEqual(before)
          snaps.push({
            id: row.id,
            volumeId: v.id,
            layerId: row.layerId,
            tree: copyTree(v.tree),
            usage: { ...v.usage },
            nextIno: v.nextIno,
          })
          await checkSnapshot(snaps[snaps.length - 1] as ModelSnapshot, where)
          await checkVolume(v, where)
          break
        }
        case 'fork': {
          const v = vol as ModelVolume
          const row = await catalog.fork(team, v.id)
          expect(row.sourceVolumeId).toBe(v.id)
          const f = { id: row.id, tree: copyTree(v.tree), usage: { ...v.usage }, nextIno: v.nextIno }
          vols.push(f)
          await checkVolume(f, where)
          await checkVolume(v, where)
          break
        }
        case 'restore': {
          if (!snap) break
          const v = vols.find((x) => x.id === snap.volumeId) as ModelVolume
          const other = vol as ModelVolume
          if (other !== v && op.s % 4 === 0) {
            // A snapshot restores only onto its own volume.
            expect(await code(catalog.restore(team, other.id, snap.id)), where).toBe('not_found')
            break
          }
          const row = await catalog.restore(team, v.id, snap.id)
          expect(row.headLayerId).not.toBe(snap.layerId)
          v.tree = copyTree(snap.tree)
          v.usage = { ...snap.usage }
          v.nextIno = Math.max(v.nextIno, snap.nextIno)
          await checkVolume(v, where)
          break
        }
        case 'fromSnapshot': {
          if (!snap) break
          const row = await catalog.create(team, { snapshotId: snap.id })
          const v = { id: row.id, tree: copyTree(snap.tree), usage: { ...snap.usage }, nextIno: snap.nextIno }
          vols.push(v)
          await checkVolume(v, where)
          break
        }
        case 'deleteVolume': {
          const v = vol as ModelVolume
          await catalog.delete(team, v.id)
          vols.splice(vols.indexOf(v), 1)
          for (let k = snaps.length - 1; k >= 0; k--) if (snaps[k]?.volumeId === v.id) snaps.splice(k, 1)
          expect(await code(catalog.get(team, v.id)), where).toBe('not_found')
          expect(
            await code(
              store.commit(store.newBatch(), 1 as LayerId, { id: v.id, usedBytes: 0, usedInodes: 0 }),
            ),
          ).toBe('not_found')
          if (vols.length === 0) await newVolume()
          break
        }
        case 'deleteSnapshot': {
          if (!snap) break
          await catalog.deleteSnapshot(team, snap.volumeId, snap.id)
          snaps.splice(snaps.indexOf(snap), 1)
          expect(await code(catalog.getSnapshot(team, snap.volumeId, snap.id)), where).toBe('not_found')
          break
        }
        case 'flatten': {
          const v = vol as ModelVolume
          const chain = await headChain(store, team, v.id)
          const unused = await catalog.flatten(chain, op.keep)
          expect(unused === null, where).toBe(chain.length <= op.keep + 1)
          if (unused !== null) {
            const flat = await headChain(store, team, v.id)
            expect(flat.length, where).toBe(op.keep + 1)
            expect(flat.slice(0, op.keep)).toEqual(chain.slice(0, op.keep))
            await catalog.release(unused)
          }
          await checkVolume(v, where)
          break
        }
        case 'sync': {
          await store.syncVolume((vol as ModelVolume).id)
          break
        }
      }
    }
    // Everything alive reads as the model says; diff between snapshots of a volume covers every
    // key whose value differs; GC roots cover every extent anything can still read.
    for (const v of vols) await checkVolume(v, `final volume ${v.id}`)
    for (const s of snaps) await checkSnapshot(s, `final snapshot ${s.id}`)
    for (const [a, b] of snaps.flatMap((a) =>
      snaps.filter((b) => b.volumeId === a.volumeId).map((b) => [a, b] as const),
    )) {
      const d = await catalog.diff(a.layerId, b.layerId)
      for (const ino of INOS)
        if (!isDeepEqual(a.tree.inodes.get(ino), b.tree.inodes.get(ino))) expect(d.inodes).toContain(ino)
      const keys = new Set(d.entries.map((e) => entryKey(e.parentIno, e.name)))
      for (const parent of PARENTS)
        for (const name of NAMES) {
          const k = entryKey(parent, name)
          if (a.tree.entries.get(k)?.ino !== b.tree.entries.get(k)?.ino)
            expect(keys.has(k), `diff ${k}`).toBe(true)
        }
    }
    const reachable = await reachableOf(store, team)
    for (const t of [...vols.map((v) => v.tree), ...snaps.map((s) => s.tree)])
      for (const i of t.inodes.values())
        for (const e of i.extents) expect(reachable.has(e.hash.toString('hex'))).toBe(true)
  } finally {
    for (const v of vols) await catalog.delete(team, v.id)
  }
  // With every volume gone, no layer is left to keep a chunk.
  expect(await reachableOf(store, team)).toEqual(new Set())
}

function isDeepEqual(a: unknown, b: unknown): boolean {
  try {
    expect(a).toEqual(b)
    return true
  } catch {
    return false
  }
}

export function metadataStoreContract(name: string, getStore: () => MetadataStore, params: PbtParams): void {
  describe(`MetadataStore contract: ${name}`, () => {
    it('random row changes, snapshots, forks, restores, flattens and deletes read back as the model says', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: params.ops, size: 'max' }), (ops) =>
          runScenario(getStore(), ops),
        ),
        {
          numRuns: params.numRuns,
          verbose: 1,
          ...(params.seed !== undefined ? { seed: params.seed } : {}),
          ...(params.path ? { path: params.path } : {}),
        },
      )
    }, 600_000)

    it('writer leases: one owner at a time, taken back after expiry or release; the epoch moves on with each hand-over', async () => {
      const store = getStore()
      const team = newTeamId()
      const v = await store.catalog.create(team)
      const e1 = await store.takeLease(v.id, 'a', 30_000)
      expect(e1).toBeTypeOf('number')
      expect(await store.takeLease(v.id, 'b', 30_000)).toBeNull()
      expect(await store.takeLease(v.id, 'a', 30_000)).toBe(e1) // a renewal keeps the epoch
      await store.releaseLease(v.id, 'b') // not the owner: no effect
      expect(await store.takeLease(v.id, 'b', 30_000)).toBeNull()
      await store.releaseLease(v.id, 'a')
      const e2 = await store.takeLease(v.id, 'b', 1)
      expect(e2).toBe((e1 as number) + 1)
      await new Promise((r) => setTimeout(r, 20))
      expect(await store.takeLease(v.id, 'a', 30_000)).toBe((e2 as number) + 1) // b's lease expired
      await store.renewLeases([v.id], 'b', 30_000) // b no longer owns it: nothing renewed
      expect(await store.takeLease(v.id, 'b', 30_000)).toBeNull()
      await store.releaseLeases('a')
      expect(await store.takeLease(v.id, 'b', 30_000)).toBe((e2 as number) + 2)
      await store.catalog.delete(team, v.id)
    })

    it('fencing: a commit under an epoch the lease has moved past writes nothing (volume_lease_lost)', async () => {
      const store = getStore()
      const team = newTeamId()
      const v = await store.catalog.create(team)
      const head = v.headLayerId
      const chain = await store.catalog.chainOf(head)
      const usage = { id: v.id, usedBytes: 0, usedInodes: 1 }
      const link = (name: string, ino: number): ReturnType<MetadataStore['newBatch']> => {
        const b = store.newBatch()
        b.putEntry(ROOT_INO, Buffer.from(name), ino as Ino, 0)
        return b
      }
      const a = (await store.takeLease(v.id, 'a', 1)) as number
      await store.commit(link('by-a', 100), head, usage, { epoch: a })
      await new Promise((r) => setTimeout(r, 20)) // a's lease expires; b takes the volume over
      const b = (await store.takeLease(v.id, 'b', 30_000)) as number
      expect(b).toBe(a + 1)
      expect(await code(store.commit(link('late-from-a', 101), head, usage, { epoch: a }))).toBe(
        'volume_lease_lost',
      )
      await store.commit(link('by-b', 102), head, usage, { epoch: b })
      expect(await store.lookupEntry(chain, ROOT_INO, Buffer.from('by-a'))).toBe(100)
      expect(await store.lookupEntry(chain, ROOT_INO, Buffer.from('late-from-a'))).toBe(0)
      expect(await store.lookupEntry(chain, ROOT_INO, Buffer.from('by-b'))).toBe(102)
      await store.catalog.delete(team, v.id)
    })

    it('hands out disjoint inode-number batches under concurrency', async () => {
      const store = getStore()
      const team = newTeamId()
      const v = await store.catalog.create(team)
      const firsts = await Promise.all(Array.from({ length: 10 }, () => store.allocInodes(v.id, 256)))
      firsts.sort((a, b) => a - b)
      expect(firsts).toEqual(Array.from({ length: 10 }, (_, k) => ROOT_INO + 1 + 256 * k))
      await store.catalog.delete(team, v.id)
    })

    it('scopes volumes to their team and hides rootfs volumes from getUserVolume', async () => {
      const store = getStore()
      const { catalog } = store
      const team = newTeamId()
      const v = await catalog.create(team)
      const r = await catalog.create(team, { kind: 'rootfs' })
      expect((await catalog.getUserVolume(team, v.id)).id).toBe(v.id)
      expect(await code(catalog.getUserVolume(team, r.id))).toBe('not_found')
      expect((await catalog.get(team, r.id)).kind).toBe('rootfs')
      expect(await code(catalog.get(newTeamId(), v.id))).toBe('not_found')
      expect(await code(catalog.getUserVolume(newTeamId(), v.id))).toBe('not_found')
      expect(await code(catalog.get(team, 'not-a-uuid'))).toBe('not_found')
      expect(await catalog.teamOf(v.id)).toBe(team)
      expect((await catalog.list(team)).map((x) => x.id)).toEqual([v.id])
      expect((await catalog.list(team, 'rootfs')).map((x) => x.id)).toEqual([r.id])
      await catalog.delete(team, v.id)
      await catalog.delete(team, r.id)
    })
  })
}
