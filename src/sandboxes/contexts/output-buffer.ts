// Bounded output of contexts: a capped text buffer, the stdout/stderr/combined collector of one
// exec, and the replay window a late WebSocket gets. Nothing here grows without a limit.
import { limits } from '../../core/limits.js'
import type { Frame, StreamName } from './types.js'

/** Keeps the first `max` characters; counts the rest. */
export class TextCap {
  private parts: string[] = []
  private length = 0
  dropped = 0
  constructor(private readonly max: number) {}
  push(s: string): void {
    const room = this.max - this.length
    if (room <= 0) {
      this.dropped += s.length
      return
    }
    const piece = s.length <= room ? s : s.slice(0, room)
    this.parts.push(piece)
    this.length += piece.length
    this.dropped += s.length - piece.length
  }
  text(): string {
    if (this.parts.length > 1) this.parts = [this.parts.join('')]
    return this.parts[0] ?? ''
  }
}

/** stdout, stderr and both interleaved, each capped at contextOutputCharsMax. */
export class Collector {
  readonly out = new TextCap(limits.contextOutputCharsMax)
  readonly err = new TextCap(limits.contextOutputCharsMax)
  readonly raw = new TextCap(limits.contextOutputCharsMax)
  push(source: StreamName, data: string): void {
    ;(source === 'stdout' ? this.out : this.err).push(data)
    this.raw.push(data)
  }
}

/** The latest output frames, at most contextReplayCharsMax characters (oldest dropped first). */
export class ReplayWindow {
  private frames: Frame[] = []
  private chars = 0

  push(f: Frame): void {
    if (f.type !== 'output') return
    this.frames.push(f)
    this.chars += f.data.length
    while (this.chars > limits.contextReplayCharsMax && this.frames.length > 1) {
      const old = this.frames.shift() as Frame
      if (old.type === 'output') this.chars -= old.data.length
    }
  }

  get all(): readonly Frame[] {
    return this.frames
  }

  clear(): void {
    this.frames = []
    this.chars = 0
  }
}
