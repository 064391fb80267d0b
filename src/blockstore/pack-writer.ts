// Appends chunks into one open pack per team and seals packs on size, on chunk count, or when
// a writer asks for durability (group commit: every chunk in the pack becomes durable at once).
// Seal = upload the object (rule 1), then index it in one transaction (rule 2), then resolve.
import { assert } from '../core/assert.js'
import { newPackId, type PackId, type TeamId } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { Logger } from '../core/log.js'
import type { ChunkIndex } from './chunk-index.js'
import type { ObjectStore } from './object-store.js'
import {
  CODEC_RAW,
  FOOTER_BYTES,
  packObjectKey,
  trailerBytesFor,
  writeTrailer,
  type PackEntry,
} from './pack-format.js'

export interface PackWriterOptions {
  packSizeTargetBytes?: number
  packChunksMax?: number
  packsInFlightMax?: number
  chunkSizeMaxBytes?: number
}

interface OpenPack {
  id: PackId
  teamId: TeamId
  buf: Buffer
  used: number
  entries: PackEntry[]
  done: Promise<void>
  resolve: () => void
  reject: (err: unknown) => void
}

export class PackWriter {
  private readonly open = new Map<TeamId, OpenPack>()
  private readonly freeBuffers: Buffer[] = []
  private buffersAllocated = 0
  private readonly bufferWaiters: Array<(b: Buffer) => void> = []
  private readonly sealing = new Set<Promise<void>>()
  private readonly uploading = new Map<TeamId, number>()
  private readonly flushWanted = new Set<TeamId>()
  private readonly targetBytes: number
  private readonly chunksMax: number
  private readonly buffersMax: number
  private readonly bufferBytes: number
  /** Chunks appended but not yet committed, by `team:hex`: later writers of the same bytes wait on them. */
  readonly pending = new Map<string, Promise<void>>()

  constructor(
    private readonly objects: ObjectStore,
    private readonly index: ChunkIndex,
    private readonly log: Logger,
    opts: PackWriterOptions = {},
  ) {
    this.targetBytes = opts.packSizeTargetBytes ?? limits.packSizeTargetBytes
    this.chunksMax = opts.packChunksMax ?? limits.packChunksMax
    // In flight plus one open pack filling while they upload.
    this.buffersMax = (opts.packsInFlightMax ?? limits.packsInFlightMax) + 1
    const chunkMax = opts.chunkSizeMaxBytes ?? limits.chunkSizeMaxBytes
    this.bufferBytes =
      this.targetBytes + chunkMax + trailerBytesFor('x'.repeat(255), this.chunksMax) + FOOTER_BYTES
  }

  /**
   * Copies the chunk into the team's open pack. The returned promise (not awaited here) settles
   * when the chunk is durable and indexed. Waits only when every pack buffer is in use.
   */
  async append(teamId: TeamId, hash: Buffer, data: Uint8Array): Promise<{ committed: Promise<void> }> {
    assert(data.length > 0, 'empty chunk')
    const key = `${teamId}:${hash.toString('hex')}`
    const already = this.pending.get(key)
    if (already) return { committed: already }

    // Waiting for a buffer lets other writers run: they may fill and seal the pack we were
    // given, or add this very chunk. Re-read the open pack after every wait; from here on to
    // the copy nothing awaits, so the pack stays open while we append.
    let pack = this.open.get(teamId)
    while (!pack) {
      await this.openPack(teamId)
      pack = this.open.get(teamId)
    }
    const again = this.pending.get(key)
    if (again) return { committed: again }
    assert(pack.used + data.length <= pack.buf.length, 'pack buffer overflow')

    pack.buf.set(data, pack.used)
    pack.entries.push({
      hash,
      offset: pack.used,
      storedBytes: data.length,
      rawBytes: data.length,
      codec: CODEC_RAW,
    })
    pack.used += data.length
    this.pending.set(key, pack.done)
    const committed = pack.done
    if (pack.used >= this.targetBytes || pack.entries.length >= this.chunksMax) this.seal(pack)
    return { committed }
  }

  /**
   * Asks for everything appended so far to become durable. Group commit: when none of the
   * team's packs is uploading, the open pack is sealed now; otherwise it is sealed when that
   * upload ends, so writers arriving meanwhile share one pack instead of one each.
   */
  flush(teamId: TeamId): void {
    const pack = this.open.get(teamId)
    if (!pack || pack.entries.length === 0) return
    if ((this.uploading.get(teamId) ?? 0) === 0) this.seal(pack)
    else this.flushWanted.add(teamId)
  }

  /** Seals every open pack and waits for all uploads (their failures reach their writers). */
  async drain(): Promise<void> {
    while (this.open.size > 0 || this.sealing.size > 0) {
      for (const pack of [...this.open.values()]) {
        if (pack.entries.length > 0) this.seal(pack)
        else {
          this.open.delete(pack.teamId)
          this.returnBuffer(pack.buf)
        }
      }
      await Promise.allSettled([...this.sealing])
    }
  }

  private async openPack(teamId: TeamId): Promise<OpenPack> {
    const buf = await this.takeBuffer()
    const existing = this.open.get(teamId)
    if (existing) {
      this.returnBuffer(buf)
      return existing
    }
    let resolve!: () => void
    let reject!: (err: unknown) => void
    const done = new Promise<void>((res, rej) => {
      resolve = res
      reject = rej
    })
    done.catch(() => undefined) // observed by writers; never an unhandled rejection here
    const pack: OpenPack = { id: newPackId(), teamId, buf, used: 0, entries: [], done, resolve, reject }
    this.open.set(teamId, pack)
    return pack
  }

  private async takeBuffer(): Promise<Buffer> {
    const free = this.freeBuffers.pop()
    if (free) return free
    if (this.buffersAllocated < this.buffersMax) {
      this.buffersAllocated++
      return Buffer.allocUnsafe(this.bufferBytes)
    }
    // Every buffer is busy. Open packs of other teams would hold theirs forever if nobody
    // flushed them, so seal the fullest one; uploads return their buffers when done.
    let fullest: OpenPack | undefined
    for (const p of this.open.values())
      if (p.entries.length > 0 && (!fullest || p.used > fullest.used)) fullest = p
    if (fullest) this.seal(fullest)
    return new Promise((resolve) => this.bufferWaiters.push(resolve))
  }

  private returnBuffer(buf: Buffer): void {
    const waiter = this.bufferWaiters.shift()
    if (waiter) waiter(buf)
    else this.freeBuffers.push(buf)
  }

  private seal(pack: OpenPack): void {
    assert(this.open.get(pack.teamId) === pack, 'sealing a pack that is not open')
    this.open.delete(pack.teamId)
    this.flushWanted.delete(pack.teamId)
    this.uploading.set(pack.teamId, (this.uploading.get(pack.teamId) ?? 0) + 1)
    const p = this.upload(pack).finally(() => {
      this.sealing.delete(p)
      const n = (this.uploading.get(pack.teamId) ?? 1) - 1
      if (n === 0) this.uploading.delete(pack.teamId)
      else this.uploading.set(pack.teamId, n)
      // Writers who asked for durability while this upload ran get their pack sealed now.
      if (this.flushWanted.has(pack.teamId)) this.flush(pack.teamId)
    })
    this.sealing.add(p)
  }

  private async upload(pack: OpenPack): Promise<void> {
    const objectKey = packObjectKey(pack.teamId, pack.id)
    try {
      const size = writeTrailer(pack.buf, pack.used, { teamId: pack.teamId, entries: pack.entries })
      await this.objects.put(objectKey, pack.buf.subarray(0, size))
      await this.index.commitPack({
        id: pack.id,
        teamId: pack.teamId,
        objectKey,
        sizeBytes: size,
        entries: pack.entries,
      })
      pack.resolve()
    } catch (err) {
      // The object may be stored without index rows: GC removes such orphans after the grace period.
      this.log.warn('pack upload failed', { packId: pack.id, err })
      pack.reject(err)
    } finally {
      for (const e of pack.entries) this.pending.delete(`${pack.teamId}:${e.hash.toString('hex')}`)
      this.returnBuffer(pack.buf)
    }
  }
}
