// What a sandbox asks of the node it is placed on (docs/DEPLOY.md, "Placement"): the memory and
// CPU it will have, and the labels its template's `pod.nodeSelector` requires. A claim's are
// worked out as the claim itself will be (templates.ts, claim.ts); a sandbox taken over from a
// dead node asks for what its row says it has.
import type { Queryable } from '../../core/db.js'
import { isS0Error } from '../../core/errors.js'
import { claimResources, warmCandidate } from '../claim.js'
import type { StoredConfig } from '../rows.js'
import { findTemplate, templateNodeSelector, templateResources } from '../templates.js'

export interface Demand {
  cpuMillis: number
  memoryBytes: number
  /** Labels the node must carry (all of them). */
  labels: Record<string, string>
  /**
   * The template whose idle warm slots could take the claim; absent when it starts cold wherever
   * it lands (placement then counts its whole demand on every node).
   */
  warmTemplate?: string
}

export const NO_DEMAND: Demand = { cpuMillis: 0, memoryBytes: 0, labels: {} }

/**
 * The demand of a claim body (`POST /api/v1/sandboxes`, not yet validated). A claim the agent
 * will refuse (no such template, a malformed memory size...) asks for nothing: it is placed
 * anywhere and its agent answers with the claim's own error.
 */
export async function claimDemand(q: Queryable, teamId: string, body: unknown): Promise<Demand> {
  const template = field(body, 'template')
  if (typeof template !== 'string') return NO_DEMAND
  const tpl = await findTemplate(q, teamId, template)
  if (!tpl) return NO_DEMAND
  const resources = field(field(body, 'config'), 'resources')
  const memory = field(resources, 'memory')
  const mounts = field(body, 'mounts')
  try {
    const { memoryBytes, cpuMillis } = claimResources(
      templateResources(tpl.spec),
      typeof memory === 'string' ? { resources: { memory } } : {},
    )
    // A claim that sets its own disk size may still fit a warm slot (when it equals the
    // template's); counting it as cold only ever asks for more room than it takes.
    const warm =
      warmCandidate(
        {
          mounts: Array.isArray(mounts) ? mounts : [],
          ...(field(body, 'snapshot_id') !== undefined ? { snapshot_id: '' } : {}),
        },
        tpl,
      ) && field(resources, 'ephemeralStorage') === undefined
    return {
      cpuMillis,
      memoryBytes,
      labels: templateNodeSelector(tpl.spec),
      ...(warm ? { warmTemplate: tpl.id } : {}),
    }
  } catch (err) {
    if (isS0Error(err)) return NO_DEMAND
    throw err
  }
}

/** A property of a parsed JSON value, if it is an object. */
function field(v: unknown, key: string): unknown {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
    ? (v as Record<string, unknown>)[key]
    : undefined
}

/**
 * The demand of an existing sandbox placed again (its node died): the memory and CPU its row
 * was given, and the nodeSelector of its template as it is now (none if the template is gone).
 */
export async function sandboxDemand(q: Queryable, sandboxId: string): Promise<Demand> {
  const { rows } = await q.query<{ team_id: string; template_id: string; config: StoredConfig }>(
    'SELECT team_id, template_id, config FROM sandboxes WHERE id = $1',
    [sandboxId],
  )
  const row = rows[0]
  if (!row) return NO_DEMAND
  const tpl = await findTemplate(q, row.team_id, row.template_id)
  return {
    cpuMillis: Number(row.config.cpu_millis ?? 0),
    memoryBytes: Number(row.config.memory_bytes ?? 0),
    labels: tpl ? templateNodeSelector(tpl.spec) : {},
  }
}
