// A SOCKS5 client (RFC 1928 CONNECT, RFC 1929 username/password) for the egress proxy's upstream
// `proxy` policy: a TCP connection to the proxy, the greeting, the login, the CONNECT, and the
// socket handed back positioned at the destination's first byte. Bounded by one timeout.
import net from 'node:net'
import { S0Error, abortError } from '../core/errors.js'
import { limits } from '../core/limits.js'

export interface Socks5Proxy {
  proxyHost: string
  proxyPort: number
  /** RFC 1929 login; each part 1..255 bytes. Given: only that method is offered. */
  auth?: { username: string; password: string }
}

/** A name (resolved by the proxy) or an IP address (v4 or v6). */
export type Socks5Destination = { host: string; port: number } | { ip: string; port: number }

export interface Socks5ConnectOptions {
  /** The whole handshake (TCP connect included); default limits.socks5HandshakeTimeoutMs. */
  timeoutMs?: number
  signal?: AbortSignal
}

const VERSION = 0x05
const METHOD_NONE = 0x00
const METHOD_USERPASS = 0x02
const METHOD_REFUSED = 0xff
const CMD_CONNECT = 0x01
const ATYP_IPV4 = 0x01
const ATYP_DOMAIN = 0x03
const ATYP_IPV6 = 0x04

/** RFC 1928 §6 reply codes. */
export const SOCKS5_REPLIES: Readonly<Record<number, string>> = {
  1: 'general SOCKS server failure',
  2: 'connection not allowed by ruleset',
  3: 'network unreachable',
  4: 'host unreachable',
  5: 'connection refused',
  6: 'TTL expired',
  7: 'command not supported',
  8: 'address type not supported',
}

/**
 * A socket to `dest` through the SOCKS5 proxy. Bytes the destination sent early stay in the
 * socket for the caller. Failures are S0Errors: socks5_unreachable, socks5_auth_failed,
 * socks5_connect_failed (details.reply), socks5_protocol_error, timeout, aborted.
 */
export async function socks5Connect(
  proxy: Socks5Proxy,
  dest: Socks5Destination,
  opts: Socks5ConnectOptions = {},
): Promise<net.Socket> {
  const request = connectRequest(dest)
  const login = proxy.auth ? loginRequest(proxy.auth) : undefined
  if (opts.signal?.aborted) throw abortError(opts.signal)
  const where = `SOCKS5 proxy ${proxy.proxyHost}:${proxy.proxyPort}`
  const timeoutMs = opts.timeoutMs ?? limits.socks5HandshakeTimeoutMs

  const socket = net.connect({ host: proxy.proxyHost, port: proxy.proxyPort })
  let failure: S0Error | undefined
  const fail = (err: S0Error): void => {
    failure ??= err
    socket.destroy()
  }
  const timer = setTimeout(
    () => fail(new S0Error('timeout', `${where}: no answer within ${timeoutMs} ms`)),
    timeoutMs,
  )
  const onAbort = (): void => fail(abortError(opts.signal))
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  // Errors during the handshake surface through the reads below; this keeps them from being unhandled.
  const swallow = (): void => undefined
  socket.on('error', swallow)
  try {
    await new Promise<void>((resolve, reject) => {
      const onClose = (): void =>
        reject(failure ?? new S0Error('socks5_unreachable', `${where} cannot be reached`))
      socket.once('close', onClose)
      socket.once('connect', () => {
        socket.off('close', onClose)
        resolve()
      })
    })
    socket.setNoDelay(true)

    socket.write(Buffer.from([VERSION, 1, login ? METHOD_USERPASS : METHOD_NONE]))
    const [ver, method] = await readExact(socket, 2, where)
    if (ver !== VERSION) throw protocolError(where, `greeting answered with version ${ver}`)
    if (method === METHOD_REFUSED)
      throw new S0Error(
        'socks5_auth_failed',
        `${where} accepts none of the methods offered (${login ? 'username/password' : 'no authentication'})`,
      )
    if (method !== (login ? METHOD_USERPASS : METHOD_NONE))
      throw protocolError(where, `chose method ${method}, which was not offered`)
    if (login) {
      socket.write(login)
      const [lver, status] = await readExact(socket, 2, where)
      // RFC 1929 says version 1; some servers answer with 5. The status is what counts.
      if (lver !== 0x01 && lver !== VERSION) throw protocolError(where, `login answered with version ${lver}`)
      if (status !== 0x00) throw new S0Error('socks5_auth_failed', `${where} refused the username/password`)
    }

    socket.write(request)
    const head = await readExact(socket, 4, where)
    if (head[0] !== VERSION) throw protocolError(where, `CONNECT answered with version ${head[0]}`)
    const rep = head[1] as number
    if (rep !== 0x00)
      throw new S0Error(
        'socks5_connect_failed',
        `${where} did not connect to ${describe(dest)}: ${SOCKS5_REPLIES[rep] ?? `reply ${rep}`}`,
        { details: { reply: rep } },
      )
    const atyp = head[3]
    if (atyp === ATYP_IPV4) await readExact(socket, 4 + 2, where)
    else if (atyp === ATYP_IPV6) await readExact(socket, 16 + 2, where)
    else if (atyp === ATYP_DOMAIN) {
      const [len] = await readExact(socket, 1, where)
      await readExact(socket, (len as number) + 2, where)
    } else throw protocolError(where, `bound address of unknown type ${atyp}`)
    return socket
  } catch (err) {
    socket.destroy()
    throw failure ?? err
  } finally {
    clearTimeout(timer)
    opts.signal?.removeEventListener('abort', onAbort)
    socket.off('error', swallow)
  }
}

function protocolError(where: string, why: string): S0Error {
  return new S0Error('socks5_protocol_error', `${where}: ${why}`)
}

function describe(dest: Socks5Destination): string {
  const host = 'ip' in dest ? dest.ip : dest.host
  return `${host.includes(':') ? `[${host}]` : host}:${dest.port}`
}

function invalid(why: string): S0Error {
  return new S0Error('invalid_request', `SOCKS5: ${why}`)
}

function connectRequest(dest: Socks5Destination): Buffer {
  if (!Number.isInteger(dest.port) || dest.port < 1 || dest.port > 65535)
    throw invalid(`port ${dest.port} out of range`)
  const port = Buffer.from([dest.port >> 8, dest.port & 0xff])
  const head = Buffer.from([VERSION, CMD_CONNECT, 0x00])
  const host = 'ip' in dest ? dest.ip : dest.host
  const family = net.isIP(host)
  if ('ip' in dest && family === 0) throw invalid(`${JSON.stringify(host)} is not an IP address`)
  if (family === 4)
    return Buffer.concat([head, Buffer.from([ATYP_IPV4, ...host.split('.').map(Number)]), port])
  if (family === 6) return Buffer.concat([head, Buffer.from([ATYP_IPV6]), ipv6Bytes(host), port])
  const name = Buffer.from(host)
  if (name.length === 0 || name.length > 255) throw invalid('a destination name is 1..255 bytes')
  return Buffer.concat([head, Buffer.from([ATYP_DOMAIN, name.length]), name, port])
}

/** The 16 bytes of an IPv6 address (`::` expanded; an embedded IPv4 tail allowed). */
function ipv6Bytes(address: string): Buffer {
  let text = address.split('%')[0] as string // a zone id does not travel
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)
  if (v4) {
    const [a, b, c, d] = (v4[1] as string).split('.').map(Number) as [number, number, number, number]
    text =
      text.slice(0, -(v4[1] as string).length) +
      `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  const [left, right] = text.includes('::') ? (text.split('::') as [string, string]) : [text, undefined]
  const l = left === '' ? [] : left.split(':')
  const r = right === undefined || right === '' ? [] : right.split(':')
  const groups = right === undefined ? l : [...l, ...Array<string>(8 - l.length - r.length).fill('0'), ...r]
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2))
  return out
}

function loginRequest(auth: { username: string; password: string }): Buffer {
  const u = Buffer.from(auth.username)
  const p = Buffer.from(auth.password)
  if (u.length < 1 || u.length > 255 || p.length < 1 || p.length > 255)
    throw invalid('username and password are 1..255 bytes each (RFC 1929)')
  return Buffer.concat([Buffer.from([0x01, u.length]), u, Buffer.from([p.length]), p])
}

/** Exactly `n` bytes from the socket (paused mode: nothing beyond them is consumed). */
function readExact(socket: net.Socket, n: number, where: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      socket.off('readable', tryRead)
      socket.off('end', onEnd)
      socket.off('close', onEnd)
    }
    const onEnd = (): void => {
      cleanup()
      reject(protocolError(where, 'closed the connection during the handshake'))
    }
    function tryRead(): void {
      const chunk = socket.read(n) as Buffer | null
      if (chunk === null) return
      cleanup()
      if (chunk.length < n) reject(protocolError(where, 'closed the connection during the handshake'))
      else resolve(chunk)
    }
    socket.on('readable', tryRead)
    socket.once('end', onEnd)
    socket.once('close', onEnd)
    tryRead()
  })
}
