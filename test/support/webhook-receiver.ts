// A webhook receiver for tests: a loopback HTTP server that records every POST (raw body and
// headers) and answers with the status `respond` picks (503 to make the sender retry).
import http from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Received {
  path: string
  body: string
  headers: http.IncomingHttpHeaders
  status: number
}

export interface WebhookReceiver {
  url: string
  received: Received[]
  /** The status for a request (default 200). */
  respond: (r: Omit<Received, 'status'>) => number
  close(): Promise<void>
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const rx: WebhookReceiver = {
    url: '',
    received: [],
    respond: () => 200,
    close: async () => {
      server.closeAllConnections()
      await new Promise((r) => server.close(r))
    },
  }
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const r = { path: req.url ?? '/', body: Buffer.concat(chunks).toString('utf8'), headers: req.headers }
      const status = rx.respond(r)
      rx.received.push({ ...r, status })
      res.writeHead(status).end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  rx.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return rx
}
