// Publishability probes of a running sandbox's service: is anything listening on its port, and
// does its health check answer? Both go to the sandbox's own address on its veth (never the
// host's loopback), bounded in time.
import http from 'node:http'
import net from 'node:net'
import { limits } from '../../core/limits.js'

/** Undefined if something accepts a connection on address:port, else why not. */
export function probePort(address: string, port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port })
    const done = (why: string | undefined): void => {
      socket.destroy()
      clearTimeout(timer)
      resolve(why)
    }
    const timer = setTimeout(() => done('timed out'), limits.serviceProbeConnectTimeoutMs)
    socket.once('connect', () => done(undefined))
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message))
  })
}

/** The health check's status code, or why there is none. */
export function probeHealth(
  address: string,
  port: number,
  path: string,
): Promise<{ status: number } | { error: string }> {
  return new Promise((resolve) => {
    const req = http.request(
      { host: address, port, path, method: 'GET', timeout: limits.serviceProbeHealthTimeoutMs, agent: false },
      (res) => {
        res.resume()
        resolve({ status: res.statusCode ?? 0 })
      },
    )
    req.once('timeout', () => req.destroy(new Error('timed out')))
    req.once('error', (err: NodeJS.ErrnoException) => resolve({ error: err.code ?? err.message }))
    req.end()
  })
}
