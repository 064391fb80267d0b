// The proxy's side of an allowed connection: a TCP connection to the original destination
// (through the policy's SOCKS5 upstream proxy when it names one), and the pipe between the two.
import net from 'node:net'
import type { Duplex } from 'node:stream'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { socks5Connect } from '../socks5.js'
import type { Classified, ProxyContext } from './types.js'

/** A connection to the destination: direct, or through `egress.proxy` (SOCKS5, optional login). */
export async function connectUpstream(proxy: ProxyContext, c: Classified): Promise<net.Socket> {
  const via = c.sandbox.policy.proxy
  if (!via) return connectDirect(c.ip, c.port)
  let auth: { username: string; password: string } | undefined
  if (via.binding) {
    const p = await proxy.projection(c, via.binding)
    if (p.type !== 'username_password')
      throw new S0Error(
        'credential_projection_mismatch',
        `egress.proxy.credentialRef must project username_password, not ${p.type}`,
      )
    auth = { username: p.username, password: p.password }
  }
  return socks5Connect(
    { proxyHost: via.host, proxyPort: via.port, ...(auth ? { auth } : {}) },
    { ip: c.ip, port: c.port },
  )
}

export function connectDirect(ip: string, port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: ip, port, noDelay: true })
    const timer = setTimeout(() => {
      s.destroy()
      reject(new S0Error('egress_upstream_timeout', `connecting to ${ip}:${port} timed out`))
    }, limits.egressConnectTimeoutMs)
    s.once('connect', () => {
      clearTimeout(timer)
      s.off('error', onError)
      resolve(s)
    })
    const onError = (err: Error): void => {
      clearTimeout(timer)
      reject(
        new S0Error('egress_upstream_unreachable', `connecting to ${ip}:${port} failed: ${err.message}`, {
          cause: err,
        }),
      )
    }
    s.once('error', onError)
  })
}

/**
 * Pipes the two sockets both ways (after sending `first` upstream) until both are done; a reset
 * on one side resets the other. Resolves with the bytes each way.
 */
export function pipeBoth(
  client: net.Socket,
  upstream: Duplex,
  first: Buffer,
): Promise<{ out: number; in: number }> {
  return new Promise((resolve) => {
    let out = first.length
    let inBytes = 0
    let closed = 0
    const done = (): void => {
      if (++closed === 2) resolve({ out, in: inBytes })
    }
    client.on('data', (b: Buffer) => (out += b.length))
    upstream.on('data', (b: Buffer) => (inBytes += b.length))
    const fail = (): void => {
      client.destroy()
      upstream.destroy()
    }
    client.on('error', fail)
    upstream.on('error', fail)
    client.once('close', done)
    upstream.once('close', done)
    if (first.length > 0) upstream.write(first)
    client.pipe(upstream)
    upstream.pipe(client)
    client.resume()
  })
}
