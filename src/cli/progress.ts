// A progress line on stderr for commands that take a while (transfers, builds, restores): redrawn
// in place on a terminal, silent otherwise so pipes and scripts get only the result.
export class Progress {
  private shown = false

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  /** Whether a line is drawn at all (a terminal). Checked per call: tests and `2>file` differ. */
  get active(): boolean {
    return this.stream.isTTY === true
  }

  update(text: string): void {
    if (!this.active) return
    this.shown = true
    this.stream.write(`\r\x1b[K${this.label}: ${text}`)
  }

  /** Clears the line (or leaves `text` as the last word on it). */
  done(text?: string): void {
    if (!this.active || !this.shown) return
    this.stream.write(text === undefined ? '\r\x1b[K' : `\r\x1b[K${this.label}: ${text}\n`)
    this.shown = false
  }
}

/** 1536 → "1.5 KiB". */
export function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`
}

/** Passes chunks through, reporting the running byte count (at most every 100 ms). */
export async function* counted(
  source: AsyncIterable<Uint8Array>,
  progress: Progress,
  total?: number,
): AsyncGenerator<Uint8Array> {
  let bytes = 0
  let last = 0
  for await (const chunk of source) {
    bytes += chunk.length
    const now = Date.now()
    if (now - last >= 100) {
      last = now
      progress.update(total ? `${humanBytes(bytes)} of ${humanBytes(total)}` : humanBytes(bytes))
    }
    yield chunk
  }
  progress.done()
}
