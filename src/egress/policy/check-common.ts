// The field checkers policies share: CIDRs, domains, ports, HTTP methods, paths and httpMatch.
import {
  compact,
  integer,
  object,
  optionalBoolean,
  optionalList,
  optionalObject,
  optionalString,
  refuse,
  shown,
  string,
  type Json,
} from './fields.js'
import { isIpLiteral, parseCidr } from './ip.js'
import { parseDomainPattern } from './names.js'
import type { HTTPMatch, HTTPValueMatch, PortSpec } from './types.js'

/** The methods upstream accepts in rules (RFC 9110 plus PATCH). */
export const HTTP_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE']
/** An HTTP token (RFC 9110 5.6.2): header names. */
export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

export function checkCidr(v: unknown, path: string): string {
  const s = string(v, path)
  if (parseCidr(s) === undefined) {
    const hint = isIpLiteral(s) ? `; for one address write ${s}/${s.includes(':') ? 128 : 32}` : ''
    refuse(path, `${shown(v)} is not a CIDR (address/prefix-length, IPv4 or IPv6)${hint}`)
  }
  return s
}

export function checkDomain(v: unknown, path: string): string {
  const s = string(v, path)
  const d = parseDomainPattern(s)
  if (!d.ok) refuse(path, `${shown(v)} is not a domain name or *.suffix: it ${d.why}`)
  return d.normalized
}

export function checkPort(v: unknown, path: string, tcpOnly = false): PortSpec {
  const o = object(v, path, ['port', 'protocol', 'endPort'])
  if (o['port'] === undefined || o['port'] === null) refuse(`${path}.port`, 'is required')
  const port = integer(o['port'], `${path}.port`, 1, 65_535)
  const end = o['endPort']
  const endPort = end === undefined || end === null ? undefined : integer(end, `${path}.endPort`, 1, 65_535)
  if (endPort !== undefined && endPort < port) refuse(`${path}.endPort`, `${endPort} is below port ${port}`)
  const raw = optionalString(o, 'protocol', path)
  const protocol = raw === undefined || raw === '' ? undefined : raw.toLowerCase()
  if (protocol !== undefined && protocol !== 'tcp' && (tcpOnly || protocol !== 'udp')) {
    refuse(`${path}.protocol`, `${shown(raw)} is not ${tcpOnly ? 'tcp' : 'tcp or udp'}`)
  }
  return compact({ port, protocol, endPort })
}

export function checkTcpPort(v: unknown, path: string): PortSpec {
  return checkPort(v, path, true)
}

export function checkMethod(v: unknown, path: string): string {
  const s = string(v, path)
  if (!HTTP_METHODS.includes(s.toUpperCase()))
    refuse(path, `${shown(v)} is not one of ${HTTP_METHODS.join(', ')}`)
  return s
}

export function checkPath(v: unknown, path: string): string {
  const s = string(v, path)
  if (!s.startsWith('/')) refuse(path, `${shown(v)} must start with /`)
  return s
}

/** An optional list whose entries are unique (compared as `key` makes them). */
export function uniqueList(
  o: Json,
  key: string,
  path: string,
  item: (v: unknown, p: string) => string,
  norm: (s: string) => string = (s) => s,
): string[] | undefined {
  const list = optionalList(o, key, path, item)
  const seen = new Set<string>()
  list?.forEach((s, i) => {
    if (seen.has(norm(s))) refuse(`${path}.${key}[${i}]`, `${shown(s)} is listed twice`)
    seen.add(norm(s))
  })
  return list
}

export function checkValueMatch(v: unknown, path: string, header: boolean): HTTPValueMatch {
  const o = object(v, path, ['name', 'values', 'present'])
  const name = string(o['name'], `${path}.name`, { nonEmpty: true })
  if (header && !TOKEN.test(name)) refuse(`${path}.name`, `${shown(name)} is not a header name`)
  return compact({
    name,
    values: optionalList(o, 'values', path, (x, p) => string(x, p)),
    present: optionalBoolean(o, 'present', path),
  })
}

export function checkHttpMatch(o: Json, path: string): HTTPMatch | undefined {
  const m = optionalObject(o, 'httpMatch', path, ['methods', 'paths', 'pathPrefixes', 'query', 'headers'])
  if (m === undefined) return undefined
  const p = `${path}.httpMatch`
  return compact({
    methods: uniqueList(m, 'methods', p, checkMethod, (s) => s.toUpperCase()),
    paths: uniqueList(m, 'paths', p, checkPath),
    pathPrefixes: uniqueList(m, 'pathPrefixes', p, checkPath),
    query: optionalList(m, 'query', p, (x, q) => checkValueMatch(x, q, false)),
    headers: optionalList(m, 'headers', p, (x, q) => checkValueMatch(x, q, true)),
  })
}
