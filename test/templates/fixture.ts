// A listening s0 server for the template tests: the sandbox service on runc (no sandbox network:
// these tests only run commands), a fresh database, the shared built-in template cache, and a
// directory of its own for pulled images (so every run pulls for real and the shared cache does
// not grow); registry credentials sealed with the state directory's secret key.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createApiKey } from '../../src/accounts/index.js'
import { asTeamId } from '../../src/core/ids.js'
import { startSandboxServer, type SandboxTestServer } from '../api/sandbox-fixture.js'

export interface TemplateTestServer extends SandboxTestServer {
  /** A member (non-admin) key of the bootstrap team (whose admin key is `token`). */
  memberToken: string
  /** An admin key of another team. */
  strangerToken: string
  imagesDir: string
}

export async function startTemplateServer(): Promise<TemplateTestServer> {
  const imagesDir = await mkdtemp(path.join(tmpdir(), 's0-tpl-images-'))
  const server = await startSandboxServer({ imagesDir })
  const db = server.t.tdb.db
  const { rows } = await db.query<{ team_id: string }>('SELECT team_id FROM api_keys LIMIT 1')
  const teamId = asTeamId((rows[0] as { team_id: string }).team_id)
  const memberToken = (await createApiKey(db, { teamId, name: 'member', role: 'member' })).key
  const other = asTeamId('team-stranger')
  await db.query(`INSERT INTO teams (id, name) VALUES ($1, 'stranger')`, [other])
  const strangerToken = (await createApiKey(db, { teamId: other, name: 'x', role: 'admin' })).key
  return {
    ...server,
    memberToken,
    strangerToken,
    imagesDir,
    close: async () => {
      await server.close()
      await rm(imagesDir, { recursive: true, force: true })
    },
  }
}

/** A raw API call (the parts of /registry/credentials the SDK has no method for). */
export async function api(
  s: TemplateTestServer,
  method: string,
  p: string,
  body?: unknown,
  token: string = s.token,
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const res = await fetch(`${s.url}/api/v1${p}`, {
    method,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  })
  return { status: res.status, body: (await res.json()) as Record<string, unknown>, headers: res.headers }
}
