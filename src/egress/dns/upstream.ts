// Forwarding one query to the upstream resolver, over UDP or TCP (length-prefixed), with a fresh
// random ID, a bounded number of tries each bounded in time, and only a reply that matches the
// ID and the question accepted (a stray or spoofed datagram is ignored, not taken).
import { randomInt } from 'node:crypto'
import dgram from 'node:dgram'
import { readFile } from 'node:fs/promises'
import net from 'node:net'
import { abortError, S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { formatIp, parseIp } from '../policy/ip.js'
import { FLAG, parseMessage, type DnsMessage, type DnsQuestion } from './message.js'

export interface Upstream {
  host: string
  port: number
  family: 4 | 6
}

/** `address`, `address:port` or `[v6]:port` (an IP literal: the resolver's own names resolve nowhere). */
export function parseUpstream(s: string): Upstream {
  const m = /^\[([^\]]+)\](?::([0-9]{1,5}))?$/.exec(s) ??
    /^([^:]+)(?::([0-9]{1,5}))?$/.exec(s) ?? [s, s, undefined]
  const ip = parseIp(m[1] as string)
  const port = m[2] === undefined ? 53 : Number(m[2])
  if (ip === undefined || port < 1 || port > 65_535) {
    throw new S0Error('config_invalid', `upstream DNS resolver ${JSON.stringify(s)} is not address[:port]`)
  }
  return { host: formatIp(ip), port, family: ip.v }
}

/** The first `nameserver` of a resolv.conf. */
export async function defaultUpstream(resolvConf = '/etc/resolv.conf'): Promise<Upstream> {
  let text = ''
  try {
    text = await readFile(resolvConf, 'utf8')
  } catch (err) {
    throw new S0Error('config_invalid', `cannot read ${resolvConf} for the upstream DNS resolver`, {
      cause: err,
    })
  }
  const first = /^\s*nameserver\s+(\S+)/m.exec(text)?.[1]
  if (first === undefined) {
    throw new S0Error('config_invalid', `no nameserver in ${resolvConf}: set S0_EGRESS_RESOLVER`)
  }
  return parseUpstream(
    first.includes(':') && !first.startsWith('[') ? `[${first.replace(/%.*/, '')}]` : first,
  )
}

export interface ForwardOptions {
  upstream: Upstream
  transport: 'udp' | 'tcp'
  attemptTimeoutMs?: number
  attempts?: number
  signal?: AbortSignal
}

function sameQuestion(a: DnsQuestion | undefined, b: DnsQuestion): boolean {
  return (
    a !== undefined &&
    a.type === b.type &&
    a.class === b.class &&
    a.name.toLowerCase() === b.name.toLowerCase()
  )
}

/** The reply to `query` (a whole DNS message) from upstream, its ID set back to the query's. */
export async function forward(
  query: Buffer,
  question: DnsQuestion,
  opts: ForwardOptions,
): Promise<{ bytes: Buffer; message: DnsMessage }> {
  const attempts = opts.attempts ?? limits.dnsUpstreamAttemptsMax
  const timeoutMs = opts.attemptTimeoutMs ?? limits.dnsUpstreamAttemptTimeoutMs
  const out = Buffer.from(query)
  const id = randomInt(0x10000)
  out.writeUInt16BE(id, 0)
  const accept = (reply: Buffer): DnsMessage | undefined => {
    if (reply.length < 12 || reply.readUInt16BE(0) !== id) return undefined
    try {
      const m = parseMessage(reply)
      return (m.flags & FLAG.QR) !== 0 && sameQuestion(m.questions[0], question) ? m : undefined
    } catch {
      return undefined // malformed: as if it never came
    }
  }
  const ask = opts.transport === 'udp' ? askUdp : askTcp
  const got = await ask(out, accept, { ...opts, attempts, timeoutMs })
  got.bytes.writeUInt16BE(query.readUInt16BE(0), 0)
  return got
}

type Accept = (reply: Buffer) => DnsMessage | undefined
interface Ask {
  upstream: Upstream
  attempts: number
  timeoutMs: number
  signal?: AbortSignal
}

function failed(why: string): S0Error {
  return new S0Error('dns_upstream_failed', why)
}

function askUdp(out: Buffer, accept: Accept, o: Ask): Promise<{ bytes: Buffer; message: DnsMessage }> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(o.upstream.family === 4 ? 'udp4' : 'udp6')
    let tries = 0
    let timer: NodeJS.Timeout | undefined
    let settled = false
    const finish = (err: unknown, value?: { bytes: Buffer; message: DnsMessage }): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      o.signal?.removeEventListener('abort', onAbort)
      sock.close()
      if (value !== undefined) resolve(value)
      else reject(err)
    }
    const onAbort = (): void => finish(abortError(o.signal))
    const send = (): void => {
      if (tries++ >= o.attempts) {
        finish(failed(`no answer from ${o.upstream.host}:${o.upstream.port} after ${o.attempts} tries`))
        return
      }
      sock.send(out)
      timer = setTimeout(send, o.timeoutMs)
    }
    sock.on('message', (reply) => {
      const message = accept(reply)
      if (message !== undefined) finish(undefined, { bytes: reply, message })
    })
    sock.on('error', (err) => finish(failed(`upstream UDP: ${err.message}`)))
    if (o.signal?.aborted) {
      sock.close()
      reject(abortError(o.signal))
      return
    }
    o.signal?.addEventListener('abort', onAbort, { once: true })
    // connect(): the kernel drops datagrams from any other address.
    sock.connect(o.upstream.port, o.upstream.host, send)
  })
}

async function askTcp(out: Buffer, accept: Accept, o: Ask): Promise<{ bytes: Buffer; message: DnsMessage }> {
  let last: unknown
  for (let i = 0; i < o.attempts; i++) {
    if (o.signal?.aborted) throw abortError(o.signal)
    try {
      return await tcpOnce(out, accept, o)
    } catch (err) {
      if (o.signal?.aborted) throw abortError(o.signal)
      last = err
    }
  }
  throw failed(`no answer over TCP from ${o.upstream.host}:${o.upstream.port}: ${(last as Error).message}`)
}

function tcpOnce(out: Buffer, accept: Accept, o: Ask): Promise<{ bytes: Buffer; message: DnsMessage }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: o.upstream.host, port: o.upstream.port })
    let buf: Buffer = Buffer.alloc(0)
    let settled = false
    const done = (err: Error | undefined, value?: { bytes: Buffer; message: DnsMessage }): void => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      o.signal?.removeEventListener('abort', onAbort)
      sock.destroy()
      if (value !== undefined) resolve(value)
      else reject(err)
    }
    const onAbort = (): void => done(abortError(o.signal))
    const timer = setTimeout(() => done(new Error(`timed out after ${o.timeoutMs} ms`)), o.timeoutMs)
    o.signal?.addEventListener('abort', onAbort, { once: true })
    const frame = Buffer.alloc(2)
    frame.writeUInt16BE(out.length, 0)
    sock.on('connect', () => sock.write(Buffer.concat([frame, out])))
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const reply = Buffer.from(buf.subarray(2, 2 + buf.readUInt16BE(0)))
        buf = buf.subarray(2 + reply.length)
        const message = accept(reply)
        if (message !== undefined) {
          done(undefined, { bytes: reply, message })
          return
        }
      }
    })
    sock.on('error', (err) => done(err))
    sock.on('close', () => done(new Error('connection closed before an answer')))
  })
}
