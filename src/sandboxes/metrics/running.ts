// The claimed sandboxes this server runs now, with their runtime records (what the sampler and
// the webhook watches read): the rows say which are running here, the host which it holds.
import type { Db } from '../../core/db.js'
import type { SandboxId } from '../../core/ids.js'
import type { SandboxRecord } from '../../runtime/sandbox-record.js'
import type { SandboxHost } from '../host.js'

export interface RunningSandbox {
  id: SandboxId
  teamId: string
  record: SandboxRecord
  watchDir: string | null
}

export async function runningSandboxes(
  db: Db,
  hostId: string,
  host: SandboxHost,
  o: { withWatchDir?: boolean } = {},
): Promise<RunningSandbox[]> {
  const { rows } = await db.query<{ id: SandboxId; team_id: string; watch_dir: string | null }>(
    `SELECT id, team_id, NULLIF(config->'webhook'->>'watch_dir', '') AS watch_dir FROM sandboxes
     WHERE host = $1 AND status = 'running' ${o.withWatchDir ? `AND config ? 'webhook'` : ''}`,
    [hostId],
  )
  const out: RunningSandbox[] = []
  for (const r of rows) {
    if (!host.live.has(r.id) || (o.withWatchDir && !r.watch_dir)) continue
    try {
      out.push({ id: r.id, teamId: r.team_id, record: host.runtimeOf(r.id).get(r.id), watchDir: r.watch_dir })
    } catch {
      // Stopped between the query and now: not running any more.
    }
  }
  return out
}
