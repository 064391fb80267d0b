// The HTTP layer of the egress proxy over one sandbox connection (plain TCP, or the TLS the proxy
// terminated): Node's own parsers read the sandbox's requests (HTTP/1.1, or h2 when ALPN or the
// preface says so), a hook decides each one, and allowed requests stream to the destination with
// credentials injected. Only a body that must be rewritten or inspected is buffered, and bounded.
import http from 'node:http'
import http2 from 'node:http2'
import type net from 'node:net'
import type { Duplex } from 'node:stream'
import { assert, crashOnBug } from '../../core/assert.js'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import { bodyLength, Exchange, readBody, type ClientRequest, type ClientResponse } from './exchange.js'
import {
  needsBodySubstitution,
  parseTarget,
  requestHeaders,
  substituteBody,
  substituteQuery,
  wantsTrailers,
  withQuery,
} from './headers.js'
import { asS0Error, errorFields, unparsedRequest, type HttpHooks, type HttpVerdict } from './types.js'
import { CONNECT_REFUSAL, proxyUpgrade, rawAnswer } from './upgrade.js'
import { Upstreams, type ConnectUpstream, type OutboundBody } from './upstream.js'

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

type AllowVerdict = Extract<HttpVerdict, { action: 'allow' }>

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
    const length = bodyLength(x)
    if (target === undefined || Number.isNaN(length) || x.raw.filter(([n]) => n === 'host').length > 1) {
      const e = new S0Error(
        'egress_http_bad_request',
        'the request has no authority, two Host fields, a malformed target or a malformed Content-Length',
      )
      return x.answer(400, { error: e.code, reason: e.message }, e)
    }
    Object.assign(info, { authority: target.authority, path: target.path, query: target.query })
    if (this.#inFlight > limits.egressHttpRequestsInFlightMax) {
      return x.answer(503, { error: 'unavailable', reason: 'too many requests in flight on this connection' })
    }
    const verdict = await this.#opts.hooks.onRequest(info)
    if (verdict.action === 'deny') return x.deny(verdict)
    const body = await this.#body(x, verdict, length, expectContinue)
    if (body === 'answered') return
    const subs = verdict.substitutions ?? []
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

  /**
   * The body to forward: the sandbox's stream untouched, or, when a placeholder must be swapped
   * in it or an MCP call checked, the whole body buffered (bounded). `answered` when the
   * exchange ended here (fail-closed, too large, denied by `onBody`).
   */
  async #body(
    x: Exchange,
    verdict: AllowVerdict,
    length: number | undefined,
    expectContinue: boolean,
  ): Promise<OutboundBody | 'answered'> {
    const subs = verdict.substitutions ?? []
    const substitute = needsBodySubstitution(subs) && length !== 0
    const substituteOk = length !== undefined && length <= limits.egressSubstitutionBodyBytesMax
    if (substitute && !substituteOk && verdict.failurePolicy !== 'fail-open') {
      const why =
        length === undefined
          ? 'has no Content-Length'
          : `is over ${limits.egressSubstitutionBodyBytesMax} bytes`
      const e = new S0Error(
        'egress_http_substitution_failed',
        `the request body ${why}, so a credential placeholder cannot be swapped in it (the rule fails closed)`,
      )
      x.answer(502, { error: e.code, reason: e.message }, e)
      return 'answered'
    }
    if (expectContinue) x.res.writeContinue() // allowed: now the sandbox may send the body
    const inspect = verdict.inspectBody === 'mcp'
    if (!inspect && !(substitute && substituteOk)) {
      return length === 0 ? null : { stream: x.req, length, onBytes: (n) => void (x.summary.bytesOut += n) }
    }
    const maxBytes = Math.max(
      inspect ? limits.egressMcpBodyBytesMax : 0,
      substitute ? limits.egressSubstitutionBodyBytesMax : 0,
    )
    const buffered = length === 0 ? Buffer.alloc(0) : await readBody(x.req, maxBytes)
    if (buffered === undefined) {
      const e = new S0Error(
        'egress_http_body_too_large',
        `the body is over ${maxBytes} bytes and cannot be inspected`,
      )
      x.answer(413, { error: e.code, reason: e.message }, e)
      return 'answered'
    }
    if (inspect) {
      assert(this.#opts.hooks.onBody !== undefined, 'serveHttp: inspectBody without an onBody hook')
      const second = this.#opts.hooks.onBody(x.info, buffered)
      if (second.action === 'deny') {
        x.deny(second)
        return 'answered'
      }
    }
    const sent = substitute && substituteOk ? substituteBody(buffered, subs) : buffered
    x.summary.bytesOut = sent.length
    return length === 0 && sent.length === 0 ? null : sent
  }
}
