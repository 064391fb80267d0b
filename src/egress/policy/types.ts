// The network policy and credential wire shapes, exactly as the official SDK (sandbox0 0.9.5)
// sends them: camelCase inside `SandboxNetworkPolicy` and the credential-source bodies. These are
// the types stored (sandbox config, template spec) and answered; compile.ts validates them.

export const NETWORK_MODES = ['allow-all', 'block-all'] as const
export type NetworkMode = (typeof NETWORK_MODES)[number]

export const APP_PROTOCOLS = [
  'http',
  'tls',
  'ssh',
  'socks5',
  'mqtt',
  'redis',
  'amqp',
  'dns',
  'mongodb',
  'udp',
] as const
export type AppProtocol = (typeof APP_PROTOCOLS)[number]

export interface PortSpec {
  port: number
  /** `tcp` (default) or `udp`. */
  protocol?: string
  /** Inclusive end of a range starting at `port`. */
  endPort?: number
}

export interface TrafficRule {
  name?: string
  action: 'allow' | 'deny'
  cidrs?: string[]
  /** Exact names, or `*.suffix` for the suffix itself and every name below it (as upstream). */
  domains?: string[]
  ports?: PortSpec[]
  appProtocols?: AppProtocol[]
}

export interface HTTPValueMatch {
  name: string
  values?: string[]
  present?: boolean
}

export interface HTTPMatch {
  methods?: string[]
  paths?: string[]
  pathPrefixes?: string[]
  query?: HTTPValueMatch[]
  headers?: HTTPValueMatch[]
}

export const TLS_MODES = ['passthrough', 'terminate-reoriginate'] as const
export type TlsMode = (typeof TLS_MODES)[number]

export interface ProtocolRule {
  name?: string
  protocol: 'http' | 'mcp'
  domains?: string[]
  ports?: PortSpec[]
  tlsMode?: TlsMode
  httpMatch?: HTTPMatch
  http?: {
    methods?: { allowed?: string[]; denied?: string[] }
    paths?: { allowed?: string[]; denied?: string[]; allowedPrefixes?: string[]; deniedPrefixes?: string[] }
  }
  mcp?: { tools?: { allowed?: string[]; denied?: string[] } }
}

export const AUTH_PROTOCOLS = ['http', 'https', 'grpc', 'tls', 'ssh', 'socks5', 'mqtt', 'redis'] as const
export type AuthProtocol = (typeof AUTH_PROTOCOLS)[number]

export interface EgressCredentialRule {
  name?: string
  /** A `credentialBindings[].ref` of the same policy. */
  credentialRef: string
  rollout?: 'enabled' | 'disabled'
  protocol?: AuthProtocol
  tlsMode?: TlsMode
  failurePolicy?: 'fail-closed' | 'fail-open'
  domains?: string[]
  ports?: PortSpec[]
  httpMatch?: HTTPMatch
}

export interface EgressProxyPolicy {
  type: 'socks5'
  /** `host:port` of the upstream SOCKS5 proxy. */
  address: string
  /** A `credentialBindings[].ref` (username_password projection) for the proxy's login. */
  credentialRef?: string
}

export interface NetworkEgressPolicy {
  /** Legacy lists (with block-all): only these. May not be combined with trafficRules. */
  allowedCidrs?: string[]
  allowedDomains?: string[]
  allowedPorts?: PortSpec[]
  /** Legacy lists (with allow-all): all but these. */
  deniedDomains?: string[]
  deniedCidrs?: string[]
  deniedPorts?: PortSpec[]
  /** Ordered, first match wins; unmatched traffic falls back to `mode`. */
  trafficRules?: TrafficRule[]
  protocolRules?: ProtocolRule[]
  credentialRules?: EgressCredentialRule[]
  proxy?: EgressProxyPolicy
}

export const PROJECTION_TYPES = [
  'http_headers',
  'placeholder_substitution',
  'tls_client_certificate',
  'username_password',
  'ssh_proxy',
] as const
export type ProjectionType = (typeof PROJECTION_TYPES)[number]

export interface ProjectionSpec {
  type: ProjectionType
  httpHeaders?: { headers?: Array<{ name: string; valueTemplate: string }> }
  placeholderSubstitution?: {
    replacements?: Array<{
      placeholder: string
      valueTemplate: string
      locations: Array<'header' | 'query' | 'body'>
    }>
  }
  tlsClientCertificate?: object
  usernamePassword?: object
  sshProxy?: { sandboxPublicKeys?: string[]; upstreamUsername?: string; knownHosts?: string[] }
}

export interface CredentialBinding {
  /** The name credentialRules and proxy.credentialRef use. */
  ref: string
  /** The credential source's name (same team). */
  sourceRef: string
  projection: ProjectionSpec
  /** How long a resolved value may be reused (a Go duration: `30s`, `5m`). */
  cachePolicy?: { ttl?: string }
}

export interface SandboxNetworkPolicy {
  mode: NetworkMode
  egress?: NetworkEgressPolicy
  credentialBindings?: CredentialBinding[]
}

/** The policy of a sandbox whose claim, template and updates named none: no network at all. */
export const DEFAULT_NETWORK_POLICY: SandboxNetworkPolicy = { mode: 'block-all' }

// ---- credential sources (`/api/v1/credential-sources`) ----------------------------------------

export const RESOLVER_KINDS = [
  'static_headers',
  'static_tls_client_certificate',
  'static_username_password',
  'static_ssh_private_key',
] as const
export type ResolverKind = (typeof RESOLVER_KINDS)[number]

/** Exactly one member, the one `resolverKind` names. Write-only: never answered. */
export interface CredentialSourceSpec {
  staticHeaders?: { values?: Record<string, string> }
  staticTLSClientCertificate?: { certificatePem: string; privateKeyPem: string; caPem?: string }
  staticUsernamePassword?: { username: string; password: string }
  staticSSHPrivateKey?: { privateKeyPem: string; passphrase?: string }
}

export interface CredentialSourceWrite {
  name: string
  resolverKind: ResolverKind
  spec: CredentialSourceSpec
}
