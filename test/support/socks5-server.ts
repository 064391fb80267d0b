// A small SOCKS5 server for tests (RFC 1928 CONNECT; RFC 1929 username/password when `auth` is
// set): it records what each client asked for and relays to the destination. The egress
// end-to-end tests run it in their "upstream" network namespace too.
import net from 'node:net'

export interface Socks5Request {
  /** The methods the client offered, and the one chosen (0xff: none acceptable). */
  offered: number[]
  method: number
  username?: string
  dest?: { host: string; port: number; type: 'ipv4' | 'ipv6' | 'domain' }
  /** The reply code sent (0: connected). */
  reply?: number
}

export interface Socks5ServerOptions {
  host?: string
  port?: number
  /** Require this login (method 0x02); unset: no authentication (method 0x00). */
  auth?: { username: string; password: string }
  /** Where a destination name goes (default: the name itself, left to the OS resolver). */
  resolve?: (name: string) => string
  /** A reply code to send instead of connecting (e.g. 2: not allowed by ruleset). */
  refuse?: (dest: { host: string; port: number }) => number | undefined
}

export interface Socks5TestServer {
  host: string
  port: number
  requests: Socks5Request[]
  close(): Promise<void>
}

export async function startSocks5Server(opts: Socks5ServerOptions = {}): Promise<Socks5TestServer> {
  const requests: Socks5Request[] = []
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => undefined)
    void serve(client, opts, requests).catch(() => client.destroy())
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve())
  })
  const addr = server.address() as net.AddressInfo
  return {
    host: addr.address,
    port: addr.port,
    requests,
    close: async () => {
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

async function serve(
  client: net.Socket,
  opts: Socks5ServerOptions,
  requests: Socks5Request[],
): Promise<void> {
  const read = reader(client)
  const [ver, nmethods] = await read(2)
  if (ver !== 5) return void client.destroy()
  const offered = [...(await read(nmethods as number))]
  const wanted = opts.auth ? 0x02 : 0x00
  const req: Socks5Request = { offered, method: offered.includes(wanted) ? wanted : 0xff }
  requests.push(req)
  client.write(Buffer.from([5, req.method]))
  if (req.method === 0xff) return void client.end()
  if (opts.auth) {
    const [, ulen] = await read(2)
    const username = (await read(ulen as number)).toString()
    const [plen] = await read(1)
    const password = (await read(plen as number)).toString()
    req.username = username
    const good = username === opts.auth.username && password === opts.auth.password
    client.write(Buffer.from([1, good ? 0 : 1]))
    if (!good) return void client.end()
  }
  const [, cmd, , atyp] = await read(4)
  let host: string
  let type: 'ipv4' | 'ipv6' | 'domain'
  if (atyp === 1) {
    host = [...(await read(4))].join('.')
    type = 'ipv4'
  } else if (atyp === 4) {
    const b = await read(16)
    host = Array.from({ length: 8 }, (_, i) => b.readUInt16BE(i * 2).toString(16)).join(':')
    type = 'ipv6'
  } else {
    const [len] = await read(1)
    host = (await read(len as number)).toString()
    type = 'domain'
  }
  const port = (await read(2)).readUInt16BE(0)
  req.dest = { host, port, type }
  const answer = (code: number): void => {
    req.reply = code
    client.write(Buffer.from([5, code, 0, 1, 127, 0, 0, 1, 0, 0]))
  }
  if (cmd !== 1) return void (answer(7), client.end())
  const refused = opts.refuse?.({ host, port })
  if (refused !== undefined) return void (answer(refused), client.end())
  const target = net.connect({ host: type === 'domain' ? (opts.resolve?.(host) ?? host) : host, port })
  target.once('error', (err: NodeJS.ErrnoException) => {
    if (req.reply === undefined) answer(err.code === 'ECONNREFUSED' ? 5 : 4)
    client.end()
  })
  target.once('connect', () => {
    answer(0)
    read.rest().forEach((b) => target.write(b))
    client.pipe(target)
    target.pipe(client)
  })
  client.once('close', () => target.destroy())
}

/** Reads exact byte counts from a socket in flowing mode; `rest()` hands over what is left. */
function reader(socket: net.Socket): ((n: number) => Promise<Buffer>) & { rest(): Buffer[] } {
  let buf = Buffer.alloc(0)
  let waiting: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined
  const pump = (): void => {
    if (waiting && buf.length >= waiting.n) {
      const w = waiting
      waiting = undefined
      const out = buf.subarray(0, w.n)
      buf = buf.subarray(w.n)
      w.resolve(out)
    }
  }
  const onData = (d: Buffer): void => {
    buf = Buffer.concat([buf, d])
    pump()
  }
  socket.on('data', onData)
  socket.once('close', () => waiting?.reject(new Error('closed')))
  const read = (n: number): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      waiting = { n, resolve, reject }
      pump()
    })
  return Object.assign(read, {
    rest: () => {
      socket.off('data', onData)
      return buf.length ? [buf] : []
    },
  })
}
