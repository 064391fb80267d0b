// The volumes a team may address through the volumes API: its own, of kind `volume` (sandbox
// root-filesystem volumes are the sandboxes' business and are not found here).
import { S0Error } from '../core/errors.js'
import type { TeamId } from '../core/ids.js'
import type { VolumeEngine } from './engine.js'
import type { VolumeRow } from './volume-catalog.js'

export async function getUserVolume(engine: VolumeEngine, teamId: TeamId, id: string): Promise<VolumeRow> {
  const v = await engine.catalog.get(teamId, id)
  if (v.kind !== 'volume') throw new S0Error('not_found', `volume ${id} not found`)
  return v
}
