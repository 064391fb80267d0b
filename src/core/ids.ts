// Branded id types: a TeamId cannot be passed where a PackId is expected, at no run-time cost.
import { randomBytes } from 'node:crypto'

declare const brand: unique symbol
export type Brand<T, B extends string> = T & { readonly [brand]: B }

export type TeamId = Brand<string, 'TeamId'>
export type PackId = Brand<string, 'PackId'>
export type ApiKeyId = Brand<string, 'ApiKeyId'>
export type RootId = Brand<string, 'RootId'>

/** 128 random bits as 32 lowercase hex characters: URL-safe, sortable by nothing on purpose. */
export function randomHexId(bytes = 16): string {
  return randomBytes(bytes).toString('hex')
}

export function newTeamId(): TeamId {
  return `team-${randomHexId(8)}` as TeamId
}

export function newPackId(): PackId {
  return randomHexId(16) as PackId
}

export function newApiKeyId(): ApiKeyId {
  return `key-${randomHexId(8)}` as ApiKeyId
}

export function newRootId(): RootId {
  return `root-${randomHexId(12)}` as RootId
}

const TEAM_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/

export function isTeamId(value: string): value is TeamId {
  return TEAM_ID_PATTERN.test(value)
}

export function asTeamId(value: string): TeamId {
  if (!isTeamId(value)) throw new TypeError(`invalid team id: ${JSON.stringify(value)}`)
  return value
}
