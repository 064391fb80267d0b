// The HTTP layer of the egress proxy over one sandbox connection (plain TCP, or the TLS the proxy
// terminated): Node's own parsers read the sandbox's requests (HTTP/1.1, or h2 when ALPN or the
// preface says so), a hook decides each one, and allowed requests stream to the destination with
// credentials injected. Only a body that must be rewritten or inspected is buffered, and bounded.
import http from 'node:http'
import http2 from 'node:http2'
import type net from 'node:net'
import type { Duplex, Readable, Writable } from 'node:stream'
import { assert, crashOnBug } from '../../core/assert.js'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import {
  endToEnd,
  first,
  fromRaw,
  jsonBody,
  needsBodySubstitution,
  parseTarget,
  requestHeaders,
  substituteBody,
  substituteQuery,
  toFlat,
  toH2Object,
  toRecord,
  wantsTrailers,
  withQuery,
  type HeaderList,
} from './headers.js'
import {
  asS0Error,
  denyFields,
  errorFields,
  unparsedRequest,
  type HttpDoneSummary,
  type HttpHooks,
  type HttpRequestInfo,
} from './types.js'
import { CONNECT_REFUSAL, proxyUpgrade, rawAnswer } from './upgrade.js'
import { Upstreams, type ConnectUpstream, type InboundResponse, type OutboundBody } from './upstream.js'

export type { HttpDoneSummary, HttpHooks, HttpRequestInfo, HttpVerdict } from './types.js'
export type { ConnectUpstream } from './upstream.js'

export interface ServeHttpOptions {
  /** The sandbox connection is TLS the proxy terminated (`:scheme` https upstream). */
  secure: boolean
  /** The ALPN the sandbox negotiated (`tlsSocket.alpnProtocol`): `h2` selects the h2 server. */
  alpn?: string | false | null
  /** Bytes the proxy core already read from a plain connection: replayed first (an h2 preface selects h2). */
  firstBytes?: Buffer
  /** A fresh destination connection offering `want.alpn` (TLS originated, or plain TCP). */
  upstream: ConnectUpstream
  hooks: HttpHooks
  /** Aborting closes the sandbox connection and everything in flight. */
  signal?: AbortSignal
}

const H2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

type ClientRequest = http.IncomingMessage | http2.Http2ServerRequest
type ClientResponse = http.ServerResponse | http2.Http2ServerResponse

/**
 * Serves HTTP on one sandbox connection until it closes; every request goes through
 * `hooks.onRequest` and is reported once through `hooks.onDone`. Never rejects.
 */
export function serveHttp(client: net.Socket, opts: ServeHttpOptions): Promise<void> {
  return new ProxyConnection(opts).serve(client)
}

class ProxyConnection {
  readonly #opts: ServeHttpOptions
  readonly #upstreams: Upstreams
  #inFlight = 0

  constructor(opts: ServeHttpOptions) {
    this.#opts = opts
    this.#upstreams = new Upstreams(opts.upstream)
  }

  async serve(client: net.Socket): Promise<void> {
    const closed = new Promise<void>((resolve) => {
      if (client.destroyed) resolve()
      else client.once('close', () => resolve())
    })
    const onAbort = (): void => void client.destroy()
    this.#opts.signal?.addEventListener('abort', onAbort, { once: true })
    if (this.#opts.signal?.aborted) client.destroy()
    const first = this.#opts.firstBytes
    const h2 =
      this.#opts.alpn === 'h2' ||
      (first !== undefined &&
        first.length >= H2_PREFACE.length &&
        first.subarray(0, H2_PREFACE.length).equals(H2_PREFACE))
    if (first !== undefined && first.length > 0) client.unshift(first)
    if (h2) this.#serveH2(client)
    else this.#serveH1(client)
    await closed
    this.#opts.signal?.removeEventListener('abort', onAbort)
    this.#upstreams.close()
  }

  #serveH1(client: net.Socket): void {
    const server = http.createServer({
      maxHeaderSize: limits.egressHttpHeaderBytesMax,
      requireHostHeader: true,
      joinDuplicateHeaders: false,
      noDelay: true,
    })
    server.maxHeadersCount = limits.egressHttpHeadersCountMax
    server.timeout = limits.egressHttpIdleTimeoutMs
    server.keepAliveTimeout = limits.egressHttpIdleTimeoutMs
    // The handlers below never reject: every outcome is answered and reported in them.
    server.on(
      'request',
      (req: http.IncomingMessage, res: http.ServerResponse) => void this.#exchange(req, res, false),
    )
    server.on(
      'checkContinue',
      (req: http.IncomingMessage, res: http.ServerResponse) => void this.#exchange(req, res, true),
    )
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
      void this.#upgrade(req, socket, head)
    })
    server.on('connect', (req: http.IncomingMessage, socket: Duplex) => this.#refuseConnect(req, socket))
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.#clientError(err, socket))
    server.emit('connection', client)
    client.resume() // bytes the core read (unshifted) flow to the parser first
  }

  #serveH2(client: net.Socket): void {
    const server = http2.createServer({
      maxSessionMemory: limits.egressH2SessionMemoryMiB,
      maxHeaderListPairs: limits.egressHttpHeadersCountMax,
      settings: {
        maxConcurrentStreams: limits.egressHttpRequestsInFlightMax,
        maxHeaderListSize: limits.egressHttpHeaderBytesMax,
        enablePush: false,
      },
    })
    server.on('session', (session: http2.ServerHttp2Session) => {
      session.setTimeout(limits.egressHttpIdleTimeoutMs, () => session.close())
    })
    // As for HTTP/1.1: the exchange handlers never reject.
    server.on('request', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
      void this.#exchange(req, res, false)
    })
    server.on('checkContinue', (req: http2.Http2ServerRequest, res: http2.Http2ServerResponse) => {
      void this.#exchange(req, res, true)
    })
    server.emit('connection', client)
  }

  async #upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
    this.#inFlight++
    try {
      await proxyUpgrade(
        { secure: this.#opts.secure, hooks: this.#opts.hooks, upstreams: this.#upstreams },
        req,
        socket,
        head,
      )
    } finally {
      this.#inFlight--
    }
  }

  #refuseConnect(req: http.IncomingMessage, socket: Duplex): void {
    socket.on('error', () => {
      // The sandbox may reset before reading the refusal; it is reported either way.
    })
    rawAnswer(socket, 405, CONNECT_REFUSAL)
    const info = { ...unparsedRequest(this.#opts.secure, '1.1'), method: 'CONNECT', authority: req.url ?? '' }
    this.#opts.hooks.onDone({ req: info, status: 405, bytesIn: 0, bytesOut: 0 })
  }

  #clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'HPE_INVALID_EOF_STATE') {
      socket.destroy() // the sandbox went away (a request it was sending reports that itself)
      return
    }
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
    const e = new S0Error('egress_http_bad_request', `malformed request: ${err.code ?? ''} ${err.message}`)
    const inProgress =
      (socket as { _httpMessage?: { headersSent?: boolean } })._httpMessage?.headersSent === true
    if (socket.writable && !inProgress)
      rawAnswer(socket, status, { error: e.code, reason: err.code ?? err.message })
    else socket.destroy()
    this.#opts.hooks.onDone({
      req: unparsedRequest(this.#opts.secure, '1.1'),
      status,
      bytesIn: 0,
      bytesOut: 0,
      ...errorFields(e),
    })
  }

  async #exchange(req: ClientRequest, res: ClientResponse, expectContinue: boolean): Promise<void> {
    const x = new Exchange(req, res, this.#opts.secure)
    this.#inFlight++
    try {
      await this.#run(x, expectContinue)
    } catch (err) {
      crashOnBug(err)
      x.fail(asS0Error(err, 'egress_http_upstream_failed', 'forwarding'))
    }
    await x.responseClosed
    this.#inFlight--
    this.#opts.hooks.onDone(x.summary)
  }

  async #run(x: Exchange, expectContinue: boolean): Promise<void> {
    const { req, info } = x
    if (info.method === 'CONNECT') return x.answer(405, CONNECT_REFUSAL)
    const target = parseTarget(req.url ?? '', info.authority || undefined, info.method)
    if (target === undefined || x.raw.filter(([n]) => n === 'host').length > 1) {
      const e = new S0Error(
        'egress_http_bad_request',
        'the request has no authority, two Host fields, or a malformed target',
      )
      return x.answer(400, { error: e.code, reason: e.message }, e)
    }
    Object.assign(info, { authority: target.authority, path: target.path, query: target.query })
    if (this.#inFlight > limits.egressHttpRequestsInFlightMax) {
      return x.answer(503, { error: 'unavailable', reason: 'too many requests in flight on this connection' })
    }
    const verdict = await this.#opts.hooks.onRequest(info)
    if (verdict.action === 'deny') return x.answer(verdict.status, denyFields(verdict))

    const subs = verdict.substitutions ?? []
    const length = bodyLength(x)
    if (Number.isNaN(length)) {
      const e = new S0Error('egress_http_bad_request', 'the request has a malformed Content-Length')
      return x.answer(400, { error: e.code, reason: e.message }, e)
    }
    const onBytes = (n: number): void => void (x.summary.bytesOut += n)
    let body: OutboundBody = length === 0 ? null : { stream: req, length, onBytes }
    const substitute = needsBodySubstitution(subs) && length !== 0
    const substituteOk = length !== undefined && length <= limits.egressSubstitutionBodyBytesMax
    if (substitute && !substituteOk && verdict.failurePolicy !== 'fail-open') {
      const e = new S0Error(
        'egress_http_substitution_failed',
        length === undefined
          ? 'the request body has no Content-Length, so a credential placeholder cannot be swapped in it (the rule fails closed)'
          : `the request body is over ${limits.egressSubstitutionBodyBytesMax} bytes, so a credential placeholder cannot be swapped in it (the rule fails closed)`,
      )
      return x.answer(502, { error: e.code, reason: e.message }, e)
    }
    if (expectContinue) x.res.writeContinue() // allowed: now the sandbox may send the body
    if (verdict.inspectBody === 'mcp' || (substitute && substituteOk)) {
      const buffered = length === 0 ? Buffer.alloc(0) : await readBody(req, limits.egressMcpBodyBytesMax)
      if (buffered === undefined) {
        const e = new S0Error(
          'egress_http_body_too_large',
          `the body is over ${limits.egressMcpBodyBytesMax} bytes and cannot be inspected`,
        )
        return x.answer(413, { error: e.code, reason: e.message }, e)
      }
      if (verdict.inspectBody === 'mcp') {
        assert(this.#opts.hooks.onBody !== undefined, 'serveHttp: inspectBody without an onBody hook')
        const second = this.#opts.hooks.onBody(info, buffered)
        if (second.action === 'deny') return x.answer(second.status, denyFields(second))
      }
      const sent = substitute && substituteOk ? substituteBody(buffered, subs) : buffered
      body = length === 0 && sent.length === 0 ? null : sent
    }
    if (Buffer.isBuffer(body)) x.summary.bytesOut = body.length

    const upRes = await this.#upstreams.send({
      method: info.method,
      target: withQuery(target.path, substituteQuery(target.query, subs)),
      authority: target.authority,
      scheme: this.#opts.secure ? 'https' : 'http',
      headers: requestHeaders(x.raw, verdict),
      body,
      teTrailers: wantsTrailers(x.raw),
    })
    x.relay(upRes)
  }
}

/** One request: the sandbox's side of it and what is reported when it is over. */
class Exchange {
  readonly req: ClientRequest
  readonly res: ClientResponse
  readonly raw: HeaderList
  readonly h2: boolean
  readonly info: HttpRequestInfo
  readonly summary: HttpDoneSummary
  readonly responseClosed: Promise<void>
  /** The sandbox's side is gone (answered in full, or the connection broke). */
  #closed = false

  constructor(req: ClientRequest, res: ClientResponse, secure: boolean) {
    this.req = req
    this.res = res
    this.h2 = req.httpVersionMajor === 2
    this.raw = fromRaw(req.rawHeaders)
    const host = this.h2
      ? ((req as http2.Http2ServerRequest).authority ?? first(this.raw, 'host'))
      : first(this.raw, 'host')
    this.info = {
      method: req.method ?? '',
      authority: host?.toLowerCase() ?? '',
      path: '',
      query: '',
      headers: toRecord(this.raw),
      secure,
      httpVersion: this.h2 ? '2' : '1.1',
    }
    this.summary = { req: this.info, status: 0, bytesIn: 0, bytesOut: 0 }
    req.on('error', () => {
      // The sandbox went away mid-request; the response's close reports it.
    })
    this.responseClosed = new Promise((resolve) => {
      res.once('close', () => {
        this.#closed = true
        if (this.summary.status === 0 && res.headersSent) this.summary.status = res.statusCode
        resolve()
      })
    })
  }

  /** The proxy's own answer (a denial, a refusal, a failure), JSON naming the reason. */
  answer(status: number, fields: Record<string, unknown>, error?: S0Error): void {
    if (error !== undefined) Object.assign(this.summary, errorFields(error))
    const res = this.res
    if (this.#closed) return // nobody left to answer
    if (res.headersSent) {
      res.destroy()
      return
    }
    const body = jsonBody(fields)
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'content-length': String(body.length),
      'cache-control': 'no-store',
    }
    if (status === 405) headers['allow'] = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS'
    // An unread HTTP/1.1 body leaves the connection unusable: close it rather than read it.
    if (!this.h2 && !(this.req as http.IncomingMessage).complete) headers['connection'] = 'close'
    this.summary.status = status
    res.writeHead(status, headers)
    res.end(body)
  }

  fail(err: S0Error): void {
    Object.assign(this.summary, errorFields(err))
    if (this.#closed) return
    if (this.res.headersSent) this.res.destroy()
    else this.answer(err.status, { error: err.code, reason: err.message }, err)
  }

  /** Streams the destination's answer to the sandbox; the response's close ends the exchange. */
  relay(up: InboundResponse): void {
    const res = this.res
    const fields = endToEnd(up.headers)
    this.summary.status = up.status
    if (this.h2) (res as http2.Http2ServerResponse).writeHead(up.status, toH2Object(fields))
    else if (up.statusMessage !== undefined)
      (res as http.ServerResponse).writeHead(up.status, up.statusMessage, toFlat(fields))
    else (res as http.ServerResponse).writeHead(up.status, toFlat(fields))
    const body: Readable = up.body
    body.on('data', (c: Buffer) => (this.summary.bytesIn += c.length))
    body.pipe(res as Writable, { end: false })
    body.once('end', () => {
      const trailers = endToEnd(up.trailers())
      if (trailers.length > 0) res.addTrailers(toH2Object(trailers))
      res.end()
    })
    body.once('error', (err) => {
      this.fail(asS0Error(err, 'egress_http_upstream_failed', 'response from the destination'))
    })
    let sandboxGone = false
    body.once('close', () => {
      if (!body.readableEnded && !sandboxGone && this.summary.error === undefined) {
        this.fail(
          new S0Error('egress_http_upstream_failed', 'the destination closed the response before its end'),
        )
      }
    })
    res.once('close', () => {
      if (body.readableEnded) return
      sandboxGone = true
      const e = new S0Error('aborted', 'the sandbox closed the connection before the response ended')
      if (this.summary.error === undefined) Object.assign(this.summary, errorFields(e))
      body.destroy()
    })
  }
}

/** The request body's length: 0 for none, a number when declared, undefined when chunked/unknown. */
function bodyLength(x: Exchange): number | undefined {
  const declared = first(x.raw, 'content-length')
  if (declared !== undefined) return /^\d{1,15}$/.test(declared) ? Number(declared) : NaN
  if (x.h2) return (x.req as http2.Http2ServerRequest).stream.endAfterHeaders ? 0 : undefined
  return first(x.raw, 'transfer-encoding') === undefined ? 0 : undefined
}

/** The whole body if it is at most `maxBytes`; undefined (and the rest left unread) when larger. */
function readBody(req: ClientRequest, maxBytes: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    let size = 0
    const onData = (c: Buffer): void => {
      size += c.length
      if (size > maxBytes) {
        cleanup()
        req.pause()
        resolve(undefined)
      } else {
        parts.push(c)
      }
    }
    const onEnd = (): void => {
      cleanup()
      resolve(Buffer.concat(parts, size))
    }
    const onClose = (): void => {
      cleanup()
      reject(new S0Error('aborted', 'the sandbox closed the request before its body ended'))
    }
    const cleanup = (): void => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('close', onClose)
    }
    req.on('data', onData)
    req.once('end', onEnd)
    req.once('close', onClose)
  })
}
