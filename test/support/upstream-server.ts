// A test server run INSIDE an upstream network namespace (test/support/upstream.ts starts it
// with `nsenter --net=... node --import tsx upstream-server.ts <kind> <port>`). It prints JSON
// lines on stdout: first `{"ready":{"kind","port"}}`, then one `{"conn":{...}}` per accepted
// connection or datagram, so a test can tell whether anything reached it directly.
// To add a kind, add an entry to SERVERS (it gets the port and the emit function).
import dgram from 'node:dgram'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'
import type tls from 'node:tls'
import {
  addressRecord,
  encodeMessage,
  FLAG,
  parseMessage,
  RCODE,
  TYPE,
} from '../../src/egress/dns/message.js'
import { ipBytes, parseIp } from '../../src/egress/policy/ip.js'
import { startSshServer } from './ssh-server.js'
import os from 'node:os'
import { pathToFileURL } from 'node:url'

export interface ConnEvent {
  kind: string
  remoteAddress: string
  remotePort: number
  localAddress: string
  localPort: number
}

type Emit = (line: Record<string, unknown>) => void
/** Starts listening on `port` (0: any) on every address of the namespace; resolves with the port. */
type Start = (port: number, emit: Emit, args: readonly string[]) => Promise<number>

const BODY_BYTES_MAX = 64 * 1024

function connEvent(kind: string, s: net.Socket): ConnEvent {
  return {
    kind,
    remoteAddress: s.remoteAddress ?? '',
    remotePort: s.remotePort ?? 0,
    localAddress: s.localAddress ?? '',
    localPort: s.localPort ?? 0,
  }
}

function listen(server: net.Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '0.0.0.0', () => resolve((server.address() as net.AddressInfo).port))
  })
}

/** The echo handler of http-echo and https-echo (the latter adds the client certificate). */
function echo(req: http.IncomingMessage, res: http.ServerResponse): void {
  const chunks: Buffer[] = []
  let size = 0
  req.on('data', (b: Buffer) => {
    if (size < BODY_BYTES_MAX) chunks.push(b.subarray(0, BODY_BYTES_MAX - size))
    size += b.length
  })
  req.on('end', () => {
    const body = JSON.stringify({
      method: req.method,
      path: req.url,
      headers: req.headers,
      body: Buffer.concat(chunks).toString('utf8'),
      bodyBytes: size,
      server: { address: req.socket.localAddress, port: req.socket.localPort },
      client: { address: req.socket.remoteAddress, port: req.socket.remotePort },
      ...('getPeerCertificate' in req.socket
        ? { clientCert: (req.socket as tls.TLSSocket).getPeerCertificate().subject?.CN ?? null }
        : {}),
    })
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) })
    res.end(body)
  })
}

/**
 * One UDP socket per IPv4 address of the namespace, so that each answers from the address it
 * was sent to (a socket on 0.0.0.0 answers from the primary address, which the sender's
 * conntrack does not take for a reply). Resolves with the port (port 0: the first one chosen).
 */
async function udpOnEveryAddress(
  port: number,
  onMessage: (sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo, local: string) => void,
): Promise<number> {
  const addresses = Object.values(os.networkInterfaces())
    .flat()
    .filter((a) => a !== undefined && a.family === 'IPv4')
    .map((a) => (a as os.NetworkInterfaceInfo).address)
  // And 0.0.0.0 for whatever the list missed (the kernel prefers the more specific socket).
  let bound = port
  for (const address of [...addresses, '0.0.0.0']) {
    bound = await new Promise<number>((resolve, reject) => {
      const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true })
      sock.once('error', reject)
      sock.on('message', (msg, rinfo) => onMessage(sock, msg, rinfo, address))
      sock.bind(bound, address, () => resolve(sock.address().port))
    })
  }
  return bound
}

export const SERVERS: Record<string, Start> = {
  /** Answers every request with JSON: method, path, headers, body (first 64 KiB), addresses. */
  'http-echo': (port, emit) => {
    const server = http.createServer(echo)
    server.on('connection', (s: net.Socket) => emit({ conn: connEvent('http-echo', s) }))
    return listen(server, port)
  },

  /**
   * http-echo over TLS. Args: a PEM file with the certificate and key; optionally a CA file, which
   * makes a client certificate signed by it mandatory (its CN is echoed as `clientCert`).
   */
  'https-echo': (port, emit, args) => {
    const pem = readFileSync(args[0] as string, 'utf8')
    const clientCa = args[1] === undefined ? undefined : readFileSync(args[1], 'utf8')
    const server = https.createServer(
      {
        cert: pem,
        key: pem,
        ...(clientCa ? { ca: clientCa, requestCert: true, rejectUnauthorized: true } : {}),
      },
      echo,
    )
    server.on('connection', (s: net.Socket) => emit({ conn: connEvent('https-echo', s) }))
    return listen(server, port)
  },

  /**
   * A DNS server over UDP. Args: `name=address` (IPv4) for A answers; anything else NXDOMAIN.
   * Like udp-echo, it answers from the address it was asked on.
   */
  dns: (port, emit, args) => {
    const table = new Map(args.map((a) => a.split('=') as [string, string]))
    return udpOnEveryAddress(port, (sock, msg, rinfo, local) => {
      emit({
        conn: {
          kind: 'dns',
          remoteAddress: rinfo.address,
          remotePort: rinfo.port,
          localAddress: local,
          localPort: port,
        },
      })
      let q
      try {
        q = parseMessage(msg)
      } catch {
        return
      }
      const question = q.questions[0]
      if (!question) return
      const ip = table.get(question.name.toLowerCase().replace(/\.$/, ''))
      const parsed = ip === undefined ? undefined : parseIp(ip)
      const answers =
        parsed !== undefined && question.type === TYPE.A
          ? [addressRecord(question.name, ipBytes(parsed), 60)]
          : []
      const reply = encodeMessage({
        id: q.id,
        flags: FLAG.QR | FLAG.RA | (q.flags & FLAG.RD) | (ip === undefined ? RCODE.NXDOMAIN : RCODE.NOERROR),
        questions: q.questions,
        answers,
        authorities: [],
        additionals: [],
      })
      sock.send(reply, rinfo.port, rinfo.address)
    })
  },

  /**
   * An SSH server (ssh-server.ts) on every address. Args: a file with its host key (OpenSSH
   * private key), the one authorized public key line, the one user allowed. Logins are emitted.
   */
  ssh: async (port, emit, args) => {
    const server = await startSshServer({
      host: '0.0.0.0',
      port,
      hostKey: readFileSync(args[0] as string, 'utf8'),
      authorizedKeys: [args[1] as string],
      ...(args[2] ? { username: args[2] } : {}),
    })
    const seen = { events: 0 }
    setInterval(() => {
      for (const e of server.events.slice(seen.events)) emit({ ssh: e })
      seen.events = server.events.length
    }, 50).unref()
    return server.port
  },

  /** Writes back every byte it reads; closes when the client does. */
  'tcp-echo': (port, emit) => {
    const server = net.createServer((s) => {
      emit({ conn: connEvent('tcp-echo', s) })
      s.on('error', () => undefined)
      s.pipe(s)
    })
    return listen(server, port)
  },

  /** Sends every datagram back to its sender, from the address it was sent to. */
  'udp-echo': (port, emit) =>
    udpOnEveryAddress(port, (sock, msg, rinfo, local) => {
      emit({
        conn: {
          kind: 'udp-echo',
          remoteAddress: rinfo.address,
          remotePort: rinfo.port,
          localAddress: local,
          localPort: sock.address().port,
        },
      })
      sock.send(msg, rinfo.port, rinfo.address)
    }),
}

async function main(): Promise<void> {
  const [kind = '', portArg = '0', ...args] = process.argv.slice(2)
  const start = SERVERS[kind]
  if (!start) {
    process.stderr.write(
      `unknown server kind ${JSON.stringify(kind)}; known: ${Object.keys(SERVERS).join(', ')}\n`,
    )
    process.exit(2)
  }
  const emit: Emit = (line) => process.stdout.write(`${JSON.stringify(line)}\n`)
  const port = await start(Number(portArg), emit, args)
  emit({ ready: { kind, port } })
  // The test ends us with SIGTERM (or we go when it does: stdin closes).
  process.on('SIGTERM', () => process.exit(0))
  process.stdin.resume()
  process.stdin.on('end', () => process.exit(0))
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err: unknown) => {
    process.stderr.write(`${String(err)}\n`)
    process.exit(1)
  })
}
