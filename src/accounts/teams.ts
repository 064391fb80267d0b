// Teams: the tenants every object belongs to (another team's objects are not found).
import type { Db } from '../core/db.js'
import type { TeamId } from '../core/ids.js'

export interface TeamInfo {
  id: TeamId
  name: string
  createdAt: Date
}

/** All teams, oldest first (the CLI resolves `--team` against these). */
export async function listTeams(db: Db): Promise<TeamInfo[]> {
  const { rows } = await db.query<{ id: string; name: string; created_at: Date }>(
    'SELECT id, name, created_at FROM teams ORDER BY created_at, id',
  )
  return rows.map((r) => ({ id: r.id as TeamId, name: r.name, createdAt: r.created_at }))
}
