// The two TLS legs of terminate-reoriginate: terminateTls answers the sandbox with a leaf of its
// own CA (replaying the ClientHello the proxy core already read), originate opens TLS to the real
// destination with full verification. Every failure is an S0Error the caller audits.
import { readFile } from 'node:fs/promises'
import net from 'node:net'
import type { Duplex } from 'node:stream'
import tls from 'node:tls'
import { LRUCache } from 'lru-cache'
import { S0Error, abortError, type ErrorCode } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import type { LeafCache } from './leaf-cache.js'
import type { CertificatePem } from './x509.js'

export type Alpn = 'h2' | 'http/1.1'

export interface TerminateOptions {
  /** The sandbox's CA (its leaves). */
  ca: LeafCache
  /** The SNI the ClientHello carried, or the destination IP when it carried none. */
  serverName: string
  /** Protocols offered to the sandbox, preferred first. */
  alpn: readonly Alpn[]
  /** Bytes the proxy core already read from `client` (the ClientHello): replayed first. */
  firstBytes?: Buffer
  signal?: AbortSignal
  handshakeTimeoutMs?: number
}

/**
 * Terminates the sandbox's TLS: presents the leaf for `serverName` and negotiates ALPN
 * (`alpnProtocol` of the result; `false` means none, i.e. HTTP/1.1). The client socket must not
 * be flowing (this pauses it). On failure the client is destroyed and the promise rejects with
 * `egress_tls_name_invalid`, `egress_tls_ca_invalid`, `egress_tls_client_failed` or `aborted`.
 */
export async function terminateTls(client: net.Socket, opts: TerminateOptions): Promise<tls.TLSSocket> {
  client.pause() // bytes arriving while the leaf is issued stay buffered for the TLS server
  client.setNoDelay(true) // request/response traffic: Nagle + delayed ACK would add ~40 ms stalls
  let context: tls.SecureContext
  try {
    context = await opts.ca.secureContext(opts.serverName)
    if (opts.signal?.aborted) throw abortError(opts.signal)
  } catch (err) {
    client.destroy()
    throw err
  }
  // Replayed ahead of anything still buffered: TLSSocket feeds a wrapped socket's buffered
  // bytes to the TLS engine before it reads from the handle.
  if (opts.firstBytes !== undefined && opts.firstBytes.length > 0) client.unshift(opts.firstBytes)
  const socket = new tls.TLSSocket(client, {
    isServer: true,
    secureContext: context,
    ALPNProtocols: [...opts.alpn],
    requestCert: false,
  })
  await handshake(socket, 'secure', {
    timeoutMs: opts.handshakeTimeoutMs ?? limits.egressTlsHandshakeTimeoutMs,
    signal: opts.signal,
    fail: (err) =>
      new S0Error(
        'egress_tls_client_failed',
        `sandbox TLS handshake for ${opts.serverName} failed: ${message(err)}`,
        {
          cause: err,
          details: { serverName: opts.serverName },
        },
      ),
  })
  // Only tls.Server clears this on its sockets; an h2 session on a socket still marked as
  // connecting waits for a 'secureConnect' that a server socket never emits.
  ;(socket as { secureConnecting?: boolean }).secureConnecting = false
  return socket
}

export interface OriginateOptions {
  /** The destination (the connection's original address). Unused when `socket` is given. */
  ip: string
  port: number
  /** The name the destination's certificate must carry (sent as SNI unless it is an IP). */
  serverName: string
  alpn: readonly Alpn[]
  /** PEM bundle of trusted roots; default: the host's system bundle (S0_EGRESS_CA_FILE in tests). */
  ca?: string
  /** Presented when the destination asks (a `tls_client_certificate` projection). */
  clientCert?: CertificatePem
  /** An established stream to run TLS over (a SOCKS5 tunnel) instead of connecting to ip:port. */
  socket?: Duplex
  signal?: AbortSignal
  handshakeTimeoutMs?: number
}

/**
 * Opens TLS to the destination and verifies it fully: the chain to the trust store, validity,
 * and `serverName` against the certificate's names. Rejects with `egress_tls_upstream_unreachable`
 * (TCP failed), `egress_tls_upstream_unverified` (certificate), `egress_tls_upstream_failed`
 * (handshake, timeout) or `aborted`; the socket is destroyed then.
 */
export async function originate(opts: OriginateOptions): Promise<tls.TLSSocket> {
  const context = await trustContext(opts.ca, opts.clientCert)
  if (opts.signal?.aborted) throw abortError(opts.signal)
  const isIp = net.isIP(opts.serverName) !== 0
  const socket = tls.connect({
    ...(opts.socket === undefined
      ? { host: opts.ip, port: opts.port, noDelay: true }
      : { socket: opts.socket }),
    ...(isIp ? {} : { servername: opts.serverName }), // RFC 6066: no IP addresses in SNI
    secureContext: context,
    ALPNProtocols: [...opts.alpn],
    rejectUnauthorized: true,
    checkServerIdentity: (_host, cert) => tls.checkServerIdentity(opts.serverName, cert),
  })
  if (opts.socket instanceof net.Socket) opts.socket.setNoDelay(true)
  let tcpUp = opts.socket !== undefined
  socket.once('connect', () => (tcpUp = true))
  const where = { ip: opts.ip, port: opts.port, serverName: opts.serverName }
  return handshake(socket, 'secureConnect', {
    timeoutMs: opts.handshakeTimeoutMs ?? limits.egressTlsHandshakeTimeoutMs,
    signal: opts.signal,
    fail: (err) => {
      const code: ErrorCode = !tcpUp
        ? 'egress_tls_upstream_unreachable'
        : isVerifyError(err)
          ? 'egress_tls_upstream_unverified'
          : 'egress_tls_upstream_failed'
      const what = `${opts.serverName} (${opts.ip}:${opts.port})`
      return new S0Error(code, `TLS to ${what}: ${message(err)}`, {
        cause: err,
        details: { ...where, tlsError: errCode(err) },
      })
    },
  })
}

/** Waits for a handshake's event; any error, close, timeout or abort destroys the socket. */
function handshake(
  socket: tls.TLSSocket,
  event: 'secure' | 'secureConnect',
  opts: { timeoutMs: number; signal: AbortSignal | undefined; fail: (err: unknown) => S0Error },
): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const done = (err: unknown): void => {
      clearTimeout(timer)
      socket.off(event, onOk)
      socket.off('error', done)
      socket.off('close', onClose)
      opts.signal?.removeEventListener('abort', onAbort)
      if (err === undefined) return resolve(socket)
      socket.destroy()
      reject(err instanceof S0Error && err.code === 'aborted' ? err : opts.fail(err))
    }
    const onOk = (): void => done(undefined)
    const onClose = (): void => done(new Error('connection closed during the handshake'))
    const onAbort = (): void => done(abortError(opts.signal))
    const timer = setTimeout(
      () => done(Object.assign(new Error(`no handshake within ${opts.timeoutMs} ms`), { code: 'ETIMEDOUT' })),
      opts.timeoutMs,
    )
    socket.once(event, onOk)
    socket.once('error', done)
    socket.once('close', onClose)
    opts.signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** OpenSSL's certificate verification results as Node reports them, plus the name check. */
const VERIFY_ERRORS = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_TLS_CERT_ALTNAME_FORMAT',
])

function isVerifyError(err: unknown): boolean {
  return VERIFY_ERRORS.has(errCode(err) ?? '')
}

function errCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

// ---- trust --------------------------------------------------------------------------------------

/** Where Linux distributions keep the system trust bundle (Debian/Ubuntu, RHEL/Fedora, SUSE, Alpine). */
const SYSTEM_BUNDLES = [
  '/etc/ssl/certs/ca-certificates.crt',
  '/etc/pki/tls/certs/ca-bundle.crt',
  '/etc/ssl/ca-bundle.pem',
  '/etc/ssl/cert.pem',
]

let systemBundle: Promise<string | undefined> | undefined

/** The host's system bundle (read once); undefined when none exists (Node's own roots then). */
export function systemTrustBundle(): Promise<string | undefined> {
  systemBundle ??= (async () => {
    for (const file of SYSTEM_BUNDLES) {
      const text = await readFile(file, 'utf8').catch(() => undefined) // absent here: try the next
      if (text !== undefined && text.includes('BEGIN CERTIFICATE')) return text
    }
    return undefined
  })()
  return systemBundle
}

/** Verification contexts by trust bundle, then by client certificate: parsing a bundle costs ms. */
const contexts = new LRUCache<string, LRUCache<string, tls.SecureContext>>({
  max: limits.egressTrustContextsMax,
})

async function trustContext(
  ca: string | undefined,
  clientCert: CertificatePem | undefined,
): Promise<tls.SecureContext> {
  const bundle = ca ?? (await systemTrustBundle())
  const outerKey = bundle ?? ''
  let inner = contexts.get(outerKey)
  if (inner === undefined) {
    inner = new LRUCache({ max: limits.egressTrustContextsMax })
    contexts.set(outerKey, inner)
  }
  const innerKey = clientCert === undefined ? '' : clientCert.certPem + clientCert.keyPem
  let context = inner.get(innerKey)
  if (context === undefined) {
    context = tls.createSecureContext({
      minVersion: 'TLSv1.2',
      ...(bundle === undefined ? {} : { ca: bundle }),
      ...(clientCert === undefined ? {} : { cert: clientCert.certPem, key: clientCert.keyPem }),
    })
    inner.set(innerKey, context)
  }
  return context
}
