// Inode numbers for new nodes, reserved from the volume's counter (volumes.next_ino) in batches
// of limits.vfsInoBatchCount: one round trip per batch, not per create. Numbers are never reused.
import type { Ino } from '../core/ids.js'
import { limits } from '../core/limits.js'
import type { MetadataStore } from './metadata-store.js'

export class InoBatches {
  private next = 0
  private limit = 0

  constructor(
    private readonly metadata: MetadataStore,
    private readonly volumeId: string,
  ) {}

  async take(): Promise<Ino> {
    if (this.next >= this.limit) {
      this.next = await this.metadata.allocInodes(this.volumeId, limits.vfsInoBatchCount)
      this.limit = this.next + limits.vfsInoBatchCount
    }
    return this.next++ as Ino
  }
}
