// What the mounts API may do with this host's mounts: a user unmounts only a mount of the named
// volume of the team, and never one that belongs to a sandbox (it goes with the sandbox).
import { S0Error } from '../core/errors.js'
import type { TeamId } from '../core/ids.js'
import type { MountManager } from './mounts.js'

export async function unmountUserMount(
  mounts: MountManager,
  teamId: TeamId,
  volumeId: string,
  mountId: string,
): Promise<void> {
  const m = mounts.get(teamId, mountId)
  if (m.volumeId !== volumeId)
    throw new S0Error('mount_not_found', `no mount ${mountId} of volume ${volumeId}`)
  if (m.sandboxId)
    throw new S0Error(
      'conflict',
      `mount ${m.id} belongs to sandbox ${m.sandboxId}; it goes when the sandbox pauses or is deleted`,
    )
  await mounts.unmount(teamId, m.id)
}
