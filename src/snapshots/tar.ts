// A streaming tar reader (ustar, GNU and pax): yields one entry at a time with its body as a
// stream, so a 10 GiB member never sits in memory. Malformed input is an S0Error, never a guess:
// bad checksums, bad numbers, oversized extension records and truncation all fail loudly.
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'other'

export interface TarEntry {
  /** The member name as archived (UTF-8), after pax / GNU long-name overrides and the ustar prefix. */
  path: string
  type: TarEntryType
  /** The raw type flag, for messages about skipped entries. */
  typeflag: string
  /** Permission bits only (`& 0o7777`). */
  mode: number
  mtimeNs: bigint
  /** Bytes of body data (zero for links, directories, devices and FIFOs). */
  size: number
  /** Symlink target or hard-link target; null for other types. */
  linkTarget: string | null
  /**
   * The member's data, in the pieces the source delivered. Iterable once, and only until the
   * next entry is requested: moving on skips whatever was not read.
   */
  body: AsyncIterable<Buffer>
}

export interface TarReaderOptions {
  /** Largest pax or GNU long-name/long-link record accepted. */
  extensionBytesMax?: number
}

const BLOCK = 512
/** The largest pax or GNU long-name/long-link record accepted by default. */
export const TAR_EXTENSION_BYTES_MAX = limits.tarExtensionBytesMax
// Links, directories, devices and FIFOs carry no data whatever their size field says (Go's
// archive/tar reads them the same way); trusting the field would misalign the stream.
const HEADER_ONLY = new Set(['1', '2', '3', '4', '5', '6'])
const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Pulls exact byte counts out of an async iterable of chunks, copying only across chunk edges. */
class ByteSource {
  private rest: Buffer = Buffer.alloc(0)
  private ended = false
  /** Bytes handed out so far: the offset used in error messages. */
  offset = 0

  constructor(private readonly it: AsyncIterator<Buffer | Uint8Array>) {}

  /** Up to `max` bytes (at least one), or null at the end of the input. */
  async some(max: number): Promise<Buffer | null> {
    while (this.rest.length === 0) {
      if (this.ended) return null
      const r = await this.it.next()
      if (r.done) {
        this.ended = true
        return null
      }
      const v = r.value
      this.rest = Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)
    }
    const out = this.rest.subarray(0, max)
    this.rest = this.rest.subarray(out.length)
    this.offset += out.length
    return out
  }

  /** Exactly `n` bytes, or fewer if the input ends first. */
  async exact(n: number): Promise<Buffer> {
    const first = await this.some(n)
    if (first === null) return Buffer.alloc(0)
    if (first.length === n) return first
    const pieces = [first]
    let got = first.length
    while (got < n) {
      const p = await this.some(n - got)
      if (p === null) break
      pieces.push(p)
      got += p.length
    }
    return Buffer.concat(pieces, got)
  }

  async skip(n: number, what: string): Promise<void> {
    for (let left = n; left > 0;) {
      const p = await this.some(Math.min(left, limits.tarSkipPieceBytesMax))
      if (p === null) throw truncated(this.offset, what)
      left -= p.length
    }
  }

  async close(): Promise<void> {
    await this.it.return?.()
  }
}

function truncated(offset: number, what: string): S0Error {
  return new S0Error('bad_request', `tar archive is truncated at byte ${offset} (in ${what})`)
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK
}

/** Names are bytes in tar; the files API speaks UTF-8, so a name that is not UTF-8 is refused. */
function utf8Text(bytes: Buffer, what: string): string {
  try {
    return utf8.decode(bytes)
  } catch {
    throw new S0Error(
      'invalid_path',
      `tar ${what} is not valid UTF-8: ${JSON.stringify(bytes.toString('latin1'))}`,
    )
  }
}

/** A NUL-terminated header field (or GNU long-name body). */
function text(buf: Buffer, what: string): string {
  const end = buf.indexOf(0)
  return utf8Text(end === -1 ? buf : buf.subarray(0, end), what)
}

/** An octal field (space/NUL padded), or GNU base-256 when the top bit of the first byte is set. */
function numeric(field: Buffer, what: string): bigint {
  const first = field[0] ?? 0
  if (first & 0x80) {
    // Bit 6 is the sign (two's complement over the whole field): only an mtime may be negative.
    let v = BigInt(first & 0x3f)
    for (let k = 1; k < field.length; k++) v = (v << 8n) | BigInt(field[k] ?? 0)
    return first & 0x40 ? v - (1n << BigInt(field.length * 8 - 2)) : v
  }
  const s = field.toString('latin1').replace(/\0.*$/s, '').trim()
  if (s === '') return 0n
  if (!/^[0-7]+$/.test(s)) throw new S0Error('bad_request', `tar header has an invalid ${what} field`)
  return BigInt('0o' + s)
}

function safeSize(v: bigint, what: string): number {
  if (v < 0n || v > BigInt(Number.MAX_SAFE_INTEGER))
    throw new S0Error('bad_request', `tar ${what} is out of range`)
  return Number(v)
}

function checksumOk(h: Buffer): boolean {
  let stored: bigint
  try {
    stored = numeric(h.subarray(148, 156), 'checksum')
  } catch {
    // An unreadable checksum field is a wrong checksum: the caller reports the header.
    return false
  }
  let unsigned = 0
  let signed = 0
  for (let k = 0; k < BLOCK; k++) {
    const b = k >= 148 && k < 156 ? 0x20 : (h[k] as number)
    unsigned += b
    signed += b > 127 ? b - 256 : b
  }
  // Some old writers summed signed chars; both readings are accepted, as GNU tar does.
  return stored === BigInt(unsigned) || stored === BigInt(signed)
}

function typeOf(flag: string, name: string): TarEntryType {
  switch (flag) {
    case '0':
    case '\0':
    case '7': // contiguous file: a regular file everywhere that matters
      return name.endsWith('/') ? 'dir' : 'file' // pre-POSIX archives mark directories by a slash
    case '5':
      return 'dir'
    case '2':
      return 'symlink'
    case '1':
      return 'hardlink'
    default:
      return 'other' // devices, FIFOs, GNU sparse/volume/multivolume/dumpdir
  }
}

/** Pax records: `<len> <key>=<value>\n`, with len counting the whole record. */
function parsePax(buf: Buffer): Map<string, string> {
  const out = new Map<string, string>()
  let at = 0
  while (at < buf.length) {
    if (buf[at] === 0) break // some writers pad the record block with NULs
    const sp = buf.indexOf(0x20, at)
    const digits = sp === -1 ? '' : buf.toString('latin1', at, sp)
    const len = /^\d{1,8}$/.test(digits) ? Number(digits) : NaN
    if (!(len > sp - at + 1) || at + len > buf.length || buf[at + len - 1] !== 0x0a)
      throw new S0Error('bad_request', `tar pax header is malformed at record offset ${at}`)
    const record = buf.subarray(sp + 1, at + len - 1)
    const eq = record.indexOf(0x3d)
    if (eq <= 0) throw new S0Error('bad_request', `tar pax record has no key at offset ${at}`)
    // Values are taken whole: a NUL inside a pax path is kept, for the importer to refuse.
    out.set(record.toString('utf8', 0, eq), utf8Text(record.subarray(eq + 1), 'pax value'))
    at += len
  }
  return out
}

function paxTime(v: string): bigint {
  const m = /^(-?)(\d{1,15})(?:\.(\d{1,9})\d*)?$/.exec(v)
  if (!m) throw new S0Error('bad_request', `tar pax mtime ${JSON.stringify(v)} is invalid`)
  const ns = BigInt(m[2] as string) * 1_000_000_000n + BigInt((m[3] ?? '').padEnd(9, '0'))
  return m[1] === '-' ? -ns : ns
}

/** Overrides collected from extension headers, for the next real member. */
interface Pending {
  path?: string
  linkTarget?: string
  size?: number
  mtimeNs?: bigint
  sparse?: boolean
}

function applyExtension(p: Pending, flag: string, body: Buffer): void {
  if (flag === 'L') p.path = text(body, 'long name')
  else if (flag === 'K') p.linkTarget = text(body, 'long link name')
  else if (flag === 'x') {
    for (const [key, value] of parsePax(body)) {
      if (key === 'path') p.path = value
      else if (key === 'linkpath') p.linkTarget = value
      else if (key === 'size') {
        if (!/^\d{1,16}$/.test(value))
          throw new S0Error('bad_request', `tar pax size ${JSON.stringify(value)} is invalid`)
        p.size = safeSize(BigInt(value), 'pax size')
      } else if (key === 'mtime') p.mtimeNs = paxTime(value)
      else if (key.startsWith('GNU.sparse.')) p.sparse = true // the body is a sparse map, not the data
    }
  }
  // 'g' (global) headers are ignored: they hold archive-wide defaults we do not use.
}

/**
 * Reads a tar stream. The source is pulled on demand (back-pressure reaches the network) and its
 * iterator is returned (closed) when reading stops, at the end marker or on an error; reading
 * stops at the first zero block, so trailing record padding is left to the caller.
 */
export async function* readTar(
  source: AsyncIterable<Buffer | Uint8Array>,
  opts: TarReaderOptions = {},
): AsyncGenerator<TarEntry, void, undefined> {
  const extMax = opts.extensionBytesMax ?? TAR_EXTENSION_BYTES_MAX
  const src = new ByteSource(source[Symbol.asyncIterator]())
  let pending: Pending = {}
  let extensions = 0
  try {
    for (;;) {
      const at = src.offset
      const h = await src.exact(BLOCK)
      if (h.length < BLOCK) {
        if (h.length === 0 && at === 0) throw new S0Error('bad_request', 'tar archive is empty')
        throw truncated(src.offset, h.length === 0 ? 'the end-of-archive marker' : 'a header')
      }
      // One zero block ends the archive (GNU tar accepts a lone one); what follows is padding.
      if (h.every((b) => b === 0)) {
        if (extensions > 0) throw new S0Error('bad_request', 'tar extension header without a member')
        return
      }
      if (at === 0 && h[0] === 0x1f && h[1] === 0x8b)
        throw new S0Error('bad_request', 'the archive is gzip-compressed; send an uncompressed tar')
      if (!checksumOk(h)) throw new S0Error('bad_request', `tar header checksum mismatch at byte ${at}`)

      const flag = String.fromCharCode(h[156] as number)
      const headerSize = safeSize(numeric(h.subarray(124, 136), 'size'), 'size')
      if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
        if (++extensions > limits.tarExtensionsPerEntryMax)
          throw new S0Error(
            'bad_request',
            `more than ${limits.tarExtensionsPerEntryMax} tar extension headers in a row`,
          )
        if (headerSize > extMax)
          throw new S0Error(
            'bad_request',
            `tar extension header of ${headerSize} bytes at byte ${at} (max ${extMax})`,
          )
        const body = await src.exact(headerSize)
        if (body.length < headerSize) throw truncated(src.offset, 'an extension header')
        await src.skip(padding(headerSize), 'an extension header')
        applyExtension(pending, flag, body)
        continue
      }

      let name = text(h.subarray(0, 100), 'name')
      // POSIX ustar splits long names into prefix + name; GNU uses those bytes for other fields.
      if (h.toString('latin1', 257, 263) === 'ustar\0') {
        const prefix = text(h.subarray(345, 500), 'name prefix')
        if (prefix !== '') name = `${prefix}/${name}`
      }
      const path = pending.path ?? name
      const type = pending.sparse ? 'other' : typeOf(flag, path)
      const linkTarget =
        type === 'symlink' || type === 'hardlink'
          ? (pending.linkTarget ?? text(h.subarray(157, 257), 'link name'))
          : null
      const entry: TarEntry = {
        path,
        type,
        typeflag: flag,
        mode: Number(numeric(h.subarray(100, 108), 'mode') & 0o7777n),
        mtimeNs: pending.mtimeNs ?? numeric(h.subarray(136, 148), 'mtime') * 1_000_000_000n,
        size: HEADER_ONLY.has(flag) ? 0 : (pending.size ?? headerSize),
        linkTarget,
        body: EMPTY_BODY,
      }
      pending = {}
      extensions = 0
      const body = new EntryBody(src, entry.size)
      entry.body = body
      yield entry
      body.closed = true
      await src.skip(body.remaining + padding(entry.size), `the data of ${JSON.stringify(path)}`)
    }
  } finally {
    await src.close()
  }
}

const EMPTY_BODY: AsyncIterable<Buffer> = { [Symbol.asyncIterator]: async function* () {} }

/** One member's data: reads straight from the source, never past the member's end. */
class EntryBody implements AsyncIterable<Buffer> {
  closed = false
  private started = false

  constructor(
    private readonly src: ByteSource,
    public remaining: number,
  ) {}

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    if (this.started || this.closed)
      throw new S0Error('bad_request', 'a tar entry body can be read only once')
    this.started = true
    while (this.remaining > 0) {
      if (this.closed) throw new S0Error('bad_request', 'a tar entry body was read after moving on')
      const piece = await this.src.some(Math.min(this.remaining, limits.tarSkipPieceBytesMax))
      if (piece === null) throw truncated(this.src.offset, 'file data')
      this.remaining -= piece.length
      yield piece
    }
  }
}
