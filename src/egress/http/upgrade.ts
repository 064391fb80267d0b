// HTTP/1.1 requests that leave the HTTP layer: `Upgrade: websocket` (checked like any request, then
// raw bytes both ways over a dedicated destination connection), other Upgrades (answered as plain
// requests, connection closed after), and CONNECT (refused: the proxy is transparent).
import http from 'node:http'
import type net from 'node:net'
import type { Duplex } from 'node:stream'
import { crashOnBug } from '../../core/assert.js'
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import {
  endToEnd,
  first,
  fromRaw,
  jsonBody,
  parseTarget,
  requestHeaders,
  substituteQuery,
  toFlat,
  toRecord,
  withQuery,
  type HeaderList,
} from './headers.js'
import {
  asS0Error,
  denyFields,
  errorFields,
  type HttpDoneSummary,
  type HttpHooks,
  type HttpRequestInfo,
} from './types.js'
import type { InboundResponse, Upstreams } from './upstream.js'

export interface UpgradeContext {
  secure: boolean
  hooks: HttpHooks
  upstreams: Upstreams
}

export const CONNECT_REFUSAL = {
  error: 'method_not_allowed',
  reason: 'CONNECT refused: this is a transparent proxy; connect to the destination directly',
}

/** Answers on a raw socket (the HTTP server has let go of it) and closes the connection. */
export function rawAnswer(socket: Duplex, status: number, fields: Record<string, unknown>): void {
  const body = jsonBody(fields)
  socket.end(
    head(status, [
      ['content-type', 'application/json'],
      ['content-length', String(body.length)],
      ['connection', 'close'],
      ...(status === 405 ? ([['allow', 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS']] as HeaderList) : []),
    ]) + body.toString('utf8'),
  )
}

function head(status: number, headers: HeaderList, message = http.STATUS_CODES[status] ?? ''): string {
  let s = `HTTP/1.1 ${status} ${message}\r\n`
  for (const [name, value] of headers) s += `${name}: ${value}\r\n`
  return s + '\r\n'
}

/** Handles one Upgrade request; reports it through `onDone` whatever happens. */
export async function proxyUpgrade(
  ctx: UpgradeContext,
  req: http.IncomingMessage,
  socket: Duplex,
  early: Buffer,
): Promise<void> {
  const raw = fromRaw(req.rawHeaders)
  const host = first(raw, 'host')
  const method = req.method ?? 'GET'
  const info: HttpRequestInfo = {
    method,
    authority: host?.toLowerCase() ?? '',
    path: '',
    query: '',
    headers: toRecord(raw),
    secure: ctx.secure,
    httpVersion: '1.1',
  }
  const summary: HttpDoneSummary = { req: info, status: 0, bytesIn: 0, bytesOut: 0 }
  socket.on('error', () => {
    // A reset by either side ends the exchange; the close below reports it.
  })
  try {
    await relayUpgrade(ctx, { req, raw, socket, early, info, summary })
  } catch (err) {
    crashOnBug(err)
    const e = asS0Error(err, 'egress_http_upstream_failed', 'upgrade')
    Object.assign(summary, errorFields(e))
    if (summary.status === 0 && socket.writable) {
      summary.status = e.status
      rawAnswer(socket, e.status, { error: e.code, reason: e.message })
    } else {
      socket.destroy()
    }
  }
  ctx.hooks.onDone(summary)
}

interface UpgradeExchange {
  req: http.IncomingMessage
  raw: HeaderList
  socket: Duplex
  early: Buffer
  info: HttpRequestInfo
  summary: HttpDoneSummary
}

async function relayUpgrade(ctx: UpgradeContext, x: UpgradeExchange): Promise<void> {
  const target = parseTarget(x.req.url ?? '', x.info.authority, x.info.method)
  if (target === undefined) {
    x.summary.status = 400
    rawAnswer(x.socket, 400, {
      error: 'egress_http_bad_request',
      reason: 'no authority or a malformed target',
    })
    return
  }
  Object.assign(x.info, { authority: target.authority, path: target.path, query: target.query })
  const verdict = await ctx.hooks.onRequest(x.info)
  if (verdict.action === 'deny') {
    x.summary.status = verdict.status
    rawAnswer(x.socket, verdict.status, denyFields(verdict))
    return
  }
  if (verdict.inspectBody === 'mcp') {
    const second = ctx.hooks.onBody?.(x.info, Buffer.alloc(0))
    if (second?.action === 'deny') {
      x.summary.status = second.status
      rawAnswer(x.socket, second.status, denyFields(second))
      return
    }
  }
  const headers = requestHeaders(x.raw, verdict)
  const targetPath = withQuery(target.path, substituteQuery(target.query, verdict.substitutions ?? []))
  const upgrade = first(x.raw, 'upgrade') ?? ''
  if (!/(^|,)\s*websocket\s*(,|$)/i.test(upgrade)) {
    // Another protocol (h2c, say): served as a plain request without the Upgrade.
    if (
      x.req.headers['transfer-encoding'] !== undefined ||
      Number(x.req.headers['content-length'] ?? 0) > 0
    ) {
      x.summary.status = 400
      rawAnswer(x.socket, 400, { error: 'egress_http_bad_request', reason: 'a request body with Upgrade' })
      return
    }
    const res = await ctx.upstreams.send({
      method: x.info.method,
      target: targetPath,
      authority: target.authority,
      scheme: ctx.secure ? 'https' : 'http',
      headers,
      body: null,
      teTrailers: false,
    })
    await relayClosing(x, res)
    return
  }
  await relayWebSocket(ctx, x, targetPath, target.authority, [
    ...headers,
    ['connection', 'upgrade'],
    ['upgrade', upgrade],
  ])
}

/** A response written raw and then the connection closed (after an Upgrade it cannot be reused). */
async function relayClosing(x: UpgradeExchange, res: InboundResponse): Promise<void> {
  x.summary.status = res.status
  const fields = endToEnd(res.headers)
  fields.push(['connection', 'close'])
  x.socket.write(head(res.status, fields, res.statusMessage))
  res.body.on('data', (c: Buffer) => (x.summary.bytesIn += c.length))
  res.body.pipe(x.socket)
  await new Promise<void>((resolve, reject) => {
    res.body.once('end', resolve)
    res.body.once('error', reject)
    x.socket.once('close', resolve)
  })
}

async function relayWebSocket(
  ctx: UpgradeContext,
  x: UpgradeExchange,
  targetPath: string,
  authority: string,
  headers: HeaderList,
): Promise<void> {
  const upSocket = await ctx.upstreams.dedicated()
  const upReq = http.request({
    createConnection: () => upSocket,
    method: x.info.method,
    path: targetPath,
    headers: ['host', authority, ...toFlat(headers)],
    setHost: false,
    maxHeaderSize: limits.egressHttpHeaderBytesMax,
  })
  const outcome = await new Promise<
    | { kind: 'upgraded'; res: http.IncomingMessage; early: Buffer }
    | { kind: 'answered'; res: http.IncomingMessage }
  >((resolve, reject) => {
    upReq.once('upgrade', (res, _socket, upEarly) => resolve({ kind: 'upgraded', res, early: upEarly }))
    upReq.once('response', (res) => resolve({ kind: 'answered', res }))
    upReq.once('error', (err) =>
      reject(
        new S0Error('egress_http_upstream_failed', `WebSocket handshake: ${err.message}`, { cause: err }),
      ),
    )
    upReq.end()
  })
  if (outcome.kind === 'answered') {
    const res = outcome.res
    const inbound: InboundResponse = {
      status: res.statusCode ?? 502,
      statusMessage: res.statusMessage,
      headers: fromRaw(res.rawHeaders),
      body: res,
      trailers: () => [],
    }
    await relayClosing(x, inbound).finally(() => upSocket.destroy())
    return
  }
  const { res, early } = outcome
  x.summary.status = 101
  x.socket.write(head(101, fromRaw(res.rawHeaders), res.statusMessage))
  if (early.length > 0) x.socket.write(early)
  if (x.early.length > 0) upSocket.write(x.early)
  x.summary.bytesOut += x.early.length
  x.summary.bytesIn += early.length
  await pipeBothWays(x.socket, upSocket as net.Socket, x.summary)
}

/** Raw bytes both ways until either side closes; the other is then closed too. */
function pipeBothWays(client: Duplex, upstream: net.Socket, summary: HttpDoneSummary): Promise<void> {
  upstream.setTimeout(limits.egressHttpIdleTimeoutMs, () => upstream.destroy())
  client.on('data', (c: Buffer) => (summary.bytesOut += c.length))
  upstream.on('data', (c: Buffer) => (summary.bytesIn += c.length))
  upstream.on('error', () => {
    // Either side's reset closes both; nothing more to say about it.
  })
  client.pipe(upstream)
  upstream.pipe(client)
  return new Promise((resolve) => {
    let open = 2
    const closed = (): void => {
      client.destroy()
      upstream.destroy()
      if (--open === 0) resolve()
    }
    client.once('close', closed)
    upstream.once('close', closed)
  })
}
