// One request on a sandbox connection, HTTP/1.1 or h2 alike: what the hooks are shown, the
// proxy's own answers (denials, refusals, failures), the relay of the destination's answer, and
// the summary reported when the sandbox's side of it has closed.
import type http from 'node:http'
import type http2 from 'node:http2'
import type { Readable, Writable } from 'node:stream'
import { assert } from '../../core/assert.js'
import { S0Error } from '../../core/errors.js'
import {
  endToEnd,
  first,
  fromRaw,
  jsonBody,
  toFlat,
  toH2Object,
  toRecord,
  type HeaderList,
} from './headers.js'
import { asS0Error, denyFields, errorFields, type HttpDoneSummary, type HttpRequestInfo } from './types.js'
import type { InboundResponse } from './upstream.js'

export type ClientRequest = http.IncomingMessage | http2.Http2ServerRequest
export type ClientResponse = http.ServerResponse | http2.Http2ServerResponse

/** One request: the sandbox's side of it and what is reported when it is over. */
export class Exchange {
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

  /** A hook's denial: its status, and a body naming the rule. */
  deny(v: { status: number; reason: string; rule?: string }): void {
    assert(Number.isInteger(v.status) && v.status >= 400 && v.status <= 599, `deny: status ${v.status}`)
    this.answer(v.status, denyFields(v))
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
export function bodyLength(x: Exchange): number | undefined {
  const declared = first(x.raw, 'content-length')
  if (declared !== undefined) return /^\d{1,15}$/.test(declared) ? Number(declared) : NaN
  if (x.h2) return (x.req as http2.Http2ServerRequest).stream.endAfterHeaders ? 0 : undefined
  return first(x.raw, 'transfer-encoding') === undefined ? 0 : undefined
}

/** The whole body if it is at most `maxBytes`; undefined (and the rest left unread) when larger. */
export function readBody(req: ClientRequest, maxBytes: number): Promise<Buffer | undefined> {
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
