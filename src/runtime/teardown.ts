// Taking a sandbox apart on the host, in one order: container, then mounts (root overlay, the
// file system of its upper: a loop-mounted disk image or a tmpfs, the /tmp and /dev/shm
// scratch: everything under the sandbox dir) and its files (the disk image with them), then its
// veth (and address), then netns, then cgroups. Each step runs even if one before it failed.
import { removeCgroup } from './cgroups.js'
import type { OciDriver } from './driver.js'
import { deleteNetns } from './netns.js'
import type { SandboxNetwork } from './network.js'
import { unmountOverlay } from './overlay.js'
import type { SandboxRecord } from './sandbox-record.js'
import { unmountScratch } from './scratch.js'

/** Removes everything the sandbox had on the host, its directory included. Idempotent. */
export async function removeSandbox(
  driver: OciDriver,
  rec: SandboxRecord,
  network?: SandboxNetwork,
): Promise<void> {
  const errors: unknown[] = []
  const step = async (f: () => Promise<unknown>): Promise<void> => {
    try {
      await f()
    } catch (err) {
      errors.push(err)
    }
  }
  await step(() => driver.delete(rec.id))
  await step(() => unmountOverlay(rec.dir)) // every mount under the dir, last made first; then the files
  // The veth before its namespace: deleting a namespace frees its veths asynchronously, and the
  // address must not be handed out while the old pair may still exist.
  if (network) await step(() => network.detach(rec.id))
  await step(() => deleteNetns(rec.netns))
  await step(() => removeCgroup(rec.cgroupsPath))
  if (errors.length > 0) throw errors[0]
}

/**
 * Container gone, root and scratch unmounted, its address given back, the overlay's upper
 * directory kept (for a capture: its disk image stays mounted until removeSandbox);
 * removeSandbox removes the rest. /tmp and /dev/shm go with the container, as tmpfs mounts of
 * its own did (a memory image keeps them: saveScratch).
 */
export async function stopKeepingUpper(
  driver: OciDriver,
  rec: SandboxRecord,
  network?: SandboxNetwork,
): Promise<void> {
  await driver.delete(rec.id)
  await unmountOverlay(rec.rootfs, { keepFiles: true })
  await unmountScratch(rec.dir)
  await network?.detach(rec.id)
}
