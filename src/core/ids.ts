// Branded id types: a TeamId cannot be passed where a PackId is expected, at no run-time cost.
import { randomBytes } from 'node:crypto'

declare const brand: unique symbol
export type Brand<T, B extends string> = T & { readonly [brand]: B }

export type TeamId = Brand<string, 'TeamId'>
export type PackId = Brand<string, 'PackId'>
export type ApiKeyId = Brand<string, 'ApiKeyId'>
export type RootId = Brand<string, 'RootId'>
export type SandboxId = Brand<string, 'SandboxId'>
export type VolumeId = Brand<string, 'VolumeId'>
/** A volume snapshot (the volumes API). */
export type SnapshotId = Brand<string, 'SnapshotId'>
/** A sandbox root-filesystem snapshot (`rootfs-snapshot-...`). */
export type RootfsSnapshotId = Brand<string, 'RootfsSnapshotId'>
/** A layer of the volume engine (a bigserial in Postgres). */
export type LayerId = Brand<number, 'LayerId'>
/** An inode number inside one volume (the kernel's inode number on a mount). */
export type Ino = Brand<number, 'Ino'>

/** An inode number from outside the engine (the kernel, a row): checked to be one. */
export function asIno(n: number): Ino {
  if (!Number.isSafeInteger(n) || n < 1) throw new TypeError(`invalid inode number: ${n}`)
  return n as Ino
}

/**
 * The one shape of our names (teams, sandboxes, templates): a DNS label, lowercase, up to 63
 * characters, so they are safe in paths, cgroup and netns names and URLs.
 */
export const NAME_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/

/** An environment variable's name (POSIX portable: what shells accept in `export`). */
export const ENV_NAME_PATTERN = /^[A-Za-z_][A-Za-z0-9_]*$/

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

/** `sb-` + 12 hex characters. */
export function newSandboxId(): SandboxId {
  return `sb-${randomHexId(6)}` as SandboxId
}

/** Whether a string may name a sandbox (anything else is a 404 without a query). */
export function isSandboxId(value: string): value is SandboxId {
  return NAME_ID_PATTERN.test(value)
}

export function newRootId(): RootId {
  return `root-${randomHexId(12)}` as RootId
}

export function isTeamId(value: string): value is TeamId {
  return NAME_ID_PATTERN.test(value)
}

export function asTeamId(value: string): TeamId {
  if (!isTeamId(value)) throw new TypeError(`invalid team id: ${JSON.stringify(value)}`)
  return value
}
