// Registry image references (`python:3.12-slim`, `ghcr.io/org/app:1.4`, `127.0.0.1:5000/x@sha256:...`),
// parsed strictly after the grammar of distribution/reference and normalised the way docker does:
// no registry → docker.io, a one-part docker.io name → `library/<name>`, no tag and no digest →
// `latest`. A reference that does not parse is `invalid_request` naming what is wrong.
import { S0Error } from '../core/errors.js'

export interface ImageRef {
  /** Registry host (and port): `docker.io`, `ghcr.io`, `127.0.0.1:5000`. */
  registry: string
  /** Repository path in the registry: `library/python`, `org/app`. */
  repository: string
  tag: string | undefined
  /** `sha256:<64 hex>` when the reference pins one. */
  digest: string | undefined
}

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const DOMAIN_LABEL = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/
const TAG = /^[\w][\w.-]{0,127}$/
const DIGEST = /^sha256:[a-f0-9]{64}$/
/** distribution/reference: a name is at most 255 characters. */
const NAME_CHARS_MAX = 255

function bad(ref: string, why: string): S0Error {
  return new S0Error('invalid_request', `image ${JSON.stringify(ref)}: ${why}`, {
    details: { field: 'spec.mainContainer.image' },
  })
}

function isDomain(part: string): boolean {
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(part)
  if (!m || m[1] === undefined) return false
  if (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > 65535)) return false
  return m[1].split('.').every((l) => DOMAIN_LABEL.test(l))
}

export function parseImageRef(text: string): ImageRef {
  if (text.length === 0 || text.length > 4096) throw bad(text, 'empty or too long')
  if (/\s/.test(text)) throw bad(text, 'must not contain white space')
  let rest = text
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST.test(digest)) throw bad(text, 'a digest must be sha256: and 64 lowercase hex digits')
  }
  let tag: string | undefined
  const lastSlash = rest.lastIndexOf('/')
  const colon = rest.lastIndexOf(':')
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG.test(tag))
      throw bad(text, `tag ${JSON.stringify(tag)} is not a valid tag ([A-Za-z0-9_.-], up to 128)`)
  }
  const parts = rest.split('/')
  let registry = 'docker.io'
  const first = parts[0] ?? ''
  // As docker decides: the first part is a registry if it has a dot or a port, or is localhost.
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    if (!isDomain(first)) throw bad(text, `registry ${JSON.stringify(first)} is not a host name[:port]`)
    registry = first.toLowerCase()
    parts.shift()
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = 'docker.io'
  if (parts.length === 0 || parts.some((p) => !COMPONENT.test(p)))
    throw bad(text, 'the repository must be lowercase path components ([a-z0-9] separated by . _ __ or -)')
  if (registry === 'docker.io' && parts.length === 1) parts.unshift('library')
  const repository = parts.join('/')
  if (registry.length + 1 + repository.length > NAME_CHARS_MAX)
    throw bad(text, `the name is longer than ${NAME_CHARS_MAX} characters`)
  if (tag === undefined && digest === undefined) tag = 'latest'
  return { registry, repository, tag, digest }
}

/** `registry/repository[:tag][@digest]`: the canonical form of a reference. */
export function formatImageRef(r: ImageRef, o: { digest?: string } = {}): string {
  const digest = o.digest ?? r.digest
  if (o.digest !== undefined) return `${r.registry}/${r.repository}@${o.digest}`
  return `${r.registry}/${r.repository}${r.tag !== undefined ? `:${r.tag}` : ''}${digest ? `@${digest}` : ''}`
}

/**
 * Registries pulled over plain http (TLS not verified): loopback ones (a registry the operator or
 * a test runs on this host) and those the operator lists in S0_REGISTRY_INSECURE_HOSTS.
 */
export function isInsecureRegistry(registry: string, insecureHosts: readonly string[]): boolean {
  const host = registry.replace(/:\d+$/, '')
  if (host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host)) return true
  return insecureHosts.some((h) => h.toLowerCase() === registry || h.toLowerCase() === host)
}
