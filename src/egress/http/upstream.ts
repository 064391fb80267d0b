// The destination side of one sandbox connection: the first connection's ALPN decides between one
// multiplexed h2 session and a keep-alive HTTP/1.1 pool (bounded); requests arrive in a neutral
// shape (headers as lists) so an h2 sandbox can talk to an HTTP/1.1 destination and back.
import http from 'node:http'
import http2 from 'node:http2'
import type net from 'node:net'
import type { Readable } from 'node:stream'
import type tls from 'node:tls'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import type { Alpn } from '../tls/intercept.js'
import { fromObject, fromRaw, joinCookies, toFlat, toH2Object, type HeaderList } from './headers.js'

/** A fresh connection to the destination (TLS originated or plain TCP), offering `alpn`. */
export type ConnectUpstream = (want: { alpn: Alpn[] }) => Promise<net.Socket>

/** No body, exactly these bytes, or a stream (left paused until it is piped) with its length when known. */
export type OutboundBody =
  null | Buffer | { stream: Readable; length: number | undefined; onBytes?: (n: number) => void }

export interface OutboundRequest {
  method: string
  /** Origin-form target: path and query. */
  target: string
  authority: string
  scheme: 'http' | 'https'
  /** End-to-end fields only: no host, framing or hop-by-hop fields. */
  headers: HeaderList
  body: OutboundBody
  /** The sandbox sent `TE: trailers` (gRPC needs it kept on h2). */
  teTrailers: boolean
}

export interface InboundResponse {
  status: number
  statusMessage: string | undefined
  /** As received, pseudo-fields dropped (hop-by-hop ones still in). */
  headers: HeaderList
  body: Readable
  /** Trailer fields, complete once `body` has ended. */
  trailers(): HeaderList
}

/** Methods whose requests Node frames as chunked when no length is given (an empty body says 0). */
const BODY_METHODS_NO_DEFAULT = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE', 'CONNECT'])

export class Upstreams {
  readonly #connect: ConnectUpstream
  #h1: PoolAgent | undefined
  #h2: http2.ClientHttp2Session | undefined
  /** The first connection while its ALPN is being looked at (shared by concurrent first requests). */
  #choosing: Promise<void> | undefined
  #closed = false

  constructor(connect: ConnectUpstream) {
    this.#connect = connect
  }

  /** Sends one request; resolves at the response head. Failures are S0Errors. */
  async send(req: OutboundRequest): Promise<InboundResponse> {
    if (this.#closed) throw new S0Error('egress_http_upstream_failed', 'the sandbox connection has closed')
    if (this.#h1 === undefined && !this.#h2Usable()) {
      this.#choosing ??= this.#choose().finally(() => (this.#choosing = undefined))
      await this.#choosing
    }
    const h2 = this.#h2
    if (h2 !== undefined && !h2.closed && !h2.destroyed) return sendH2(h2, req)
    if (this.#h1 !== undefined) return sendH1(this.#h1, req)
    throw new S0Error('egress_http_upstream_failed', 'no upstream connection')
  }

  /** A dedicated HTTP/1.1 connection (an Upgrade handshake takes its connection over). */
  async dedicated(): Promise<net.Socket> {
    const socket = await this.#connect({ alpn: ['http/1.1'] })
    if ((socket as tls.TLSSocket).alpnProtocol === 'h2') {
      socket.destroy()
      throw new S0Error(
        'egress_http_upstream_failed',
        'the destination chose h2 where HTTP/1.1 was asked for',
      )
    }
    return socket
  }

  close(): void {
    this.#closed = true
    this.#h1?.destroy()
    this.#h2?.destroy()
  }

  #h2Usable(): boolean {
    return this.#h2 !== undefined && !this.#h2.closed && !this.#h2.destroyed
  }

  async #choose(): Promise<void> {
    const socket = await this.#connect({ alpn: ['h2', 'http/1.1'] })
    if (this.#closed) {
      socket.destroy()
      return
    }
    if ((socket as tls.TLSSocket).alpnProtocol === 'h2') {
      this.#h2 = openH2(socket)
    } else {
      this.#h1 = new PoolAgent(this.#connect, socket)
    }
  }
}

/** A keep-alive pool whose first connection is the one the ALPN choice made. */
class PoolAgent extends http.Agent {
  #seed: net.Socket | undefined
  readonly #connectUpstream: ConnectUpstream

  constructor(connect: ConnectUpstream, seed: net.Socket) {
    super({
      keepAlive: true,
      maxSockets: limits.egressHttpUpstreamConnectionsMax,
      maxFreeSockets: limits.egressHttpUpstreamConnectionsMax,
      timeout: limits.egressHttpIdleTimeoutMs,
      scheduling: 'lifo',
    })
    this.#connectUpstream = connect
    this.#seed = seed
  }

  override createConnection(
    _options: http.ClientRequestArgs,
    callback?: (err: Error | null, stream: net.Socket) => void,
  ): null {
    const seed = this.#seed
    this.#seed = undefined
    const made = seed !== undefined ? Promise.resolve(seed) : this.#connectUpstream({ alpn: ['http/1.1'] })
    made
      .then(
        (socket) => {
          if ((socket as tls.TLSSocket).alpnProtocol === 'h2') {
            socket.destroy()
            throw new S0Error('egress_http_upstream_failed', 'the destination chose h2 for an HTTP/1.1 pool')
          }
          callback?.(null, socket)
        },
        // @types/node wants a socket with the error; Node ignores it.
        (err: unknown) => callback?.(err as Error, undefined as unknown as net.Socket),
      )
      .catch((err: unknown) => callback?.(err as Error, undefined as unknown as net.Socket))
    return null
  }

  override destroy(): void {
    this.#seed?.destroy()
    this.#seed = undefined
    super.destroy()
  }
}

function upstreamError(err: unknown, what: string): S0Error {
  if (err instanceof S0Error) return err
  const code = (err as { code?: unknown } | null)?.code
  return new S0Error(
    'egress_http_upstream_failed',
    `${what}: ${err instanceof Error ? err.message : String(err)}`,
    {
      cause: err,
      details: { code: typeof code === 'string' ? code : undefined },
    },
  )
}

function sendH1(agent: PoolAgent, r: OutboundRequest): Promise<InboundResponse> {
  const flat = ['host', r.authority, ...toFlat(joinCookies(r.headers))]
  const body = r.body
  // Framing is always explicit: Node would send an unframed body for a GET of unknown length.
  if (body === null) {
    if (!BODY_METHODS_NO_DEFAULT.has(r.method)) flat.push('content-length', '0')
  } else if (Buffer.isBuffer(body)) {
    flat.push('content-length', String(body.length))
  } else if (body.length !== undefined) {
    flat.push('content-length', String(body.length))
  } else {
    flat.push('transfer-encoding', 'chunked')
  }
  return new Promise((resolve, reject) => {
    const req = http.request({
      agent,
      host: 'upstream', // the pool's key; the Host field is in `flat`
      port: 1,
      method: r.method,
      path: r.target,
      headers: flat,
      setHost: false,
      maxHeaderSize: limits.egressHttpHeaderBytesMax,
      joinDuplicateHeaders: false,
    })
    req.setTimeout(limits.egressHttpIdleTimeoutMs, () =>
      req.destroy(new S0Error('egress_http_upstream_failed', 'the destination went idle mid-request')),
    )
    const onError = (err: Error): void => reject(upstreamError(err, 'HTTP/1.1 request to the destination'))
    req.once('error', onError)
    req.once('response', (res) => {
      req.off('error', onError)
      req.on('error', (err) => res.destroy(upstreamError(err, 'HTTP/1.1 response from the destination')))
      resolve({
        status: res.statusCode ?? 502,
        statusMessage: res.statusMessage,
        headers: fromRaw(res.rawHeaders),
        body: res,
        trailers: () => fromRaw(res.rawTrailers),
      })
    })
    writeBody(req, body)
  })
}

function writeBody(req: NodeJS.WritableStream & { destroy(err?: Error): unknown }, body: OutboundBody): void {
  if (body === null) req.end()
  else if (Buffer.isBuffer(body)) req.end(body)
  else {
    // Counted only now: a 'data' listener added earlier would start the flow before the pipe.
    const onBytes = body.onBytes
    if (onBytes !== undefined) body.stream.on('data', (c: Buffer) => onBytes(c.length))
    body.stream.pipe(req)
    // A sandbox that goes away mid-body must not leave the destination waiting for the rest.
    body.stream.once('close', () => {
      if (!body.stream.readableEnded)
        req.destroy(new S0Error('aborted', 'the sandbox abandoned the request body'))
    })
  }
}

function openH2(socket: net.Socket): http2.ClientHttp2Session {
  const session = http2.connect('https://upstream', {
    createConnection: () => socket,
    maxSessionMemory: limits.egressH2SessionMemoryMiB,
    maxHeaderListPairs: limits.egressHttpHeadersCountMax,
    settings: { enablePush: false, maxHeaderListSize: limits.egressHttpHeaderBytesMax },
  })
  session.setTimeout(limits.egressHttpIdleTimeoutMs, () => session.close())
  session.on('error', () => {
    // Every stream of the session fails with it and reports there; the session is replaced.
  })
  return session
}

function sendH2(session: http2.ClientHttp2Session, r: OutboundRequest): Promise<InboundResponse> {
  const head: http2.OutgoingHttpHeaders = {
    ...toH2Object(r.headers),
    ':method': r.method,
    ':path': r.target,
    ':authority': r.authority,
    ':scheme': r.scheme,
  }
  const body = r.body
  if (Buffer.isBuffer(body)) head['content-length'] = body.length
  else if (body !== null && body.length !== undefined) head['content-length'] = body.length
  if (r.teTrailers) head['te'] = 'trailers'
  return new Promise((resolve, reject) => {
    let stream: http2.ClientHttp2Stream
    try {
      stream = session.request(head, { endStream: body === null })
    } catch (err) {
      reject(upstreamError(err, 'h2 request to the destination'))
      return
    }
    let trailers: HeaderList = []
    stream.setTimeout(limits.egressHttpIdleTimeoutMs, () =>
      stream.destroy(new S0Error('egress_http_upstream_failed', 'the destination went idle mid-request')),
    )
    stream.once('error', (err) => reject(upstreamError(err, 'h2 request to the destination')))
    stream.once('trailers', (t) => (trailers = fromObject(t)))
    stream.once('response', (headers) => {
      resolve({
        status: Number(headers[':status']),
        statusMessage: undefined,
        headers: fromObject(headers),
        body: stream,
        trailers: () => trailers,
      })
    })
    if (body !== null) writeBody(stream, body)
  })
}
