// `s0 mount <volume-id> <dir>`: mounts a volume with FUSE in the foreground until SIGINT/SIGTERM
// (or `fusermount -u <dir>`), then flushes and unmounts. It opens the database and the object
// store itself and takes the volume's writer lease, so the server's files API answers 409 for
// that volume meanwhile (one writer per volume). Mounts inside the server: the mounts API.
import { createHash } from 'node:crypto'
import os from 'node:os'
import { S0Error } from '../core/errors.js'
import { FuseMount } from '../fuse/mount.js'
import { VolumeEngine } from '../snapshots/engine.js'
import { parseFlags } from './flags.js'
import { withChunkStore } from './offline.js'

const USAGE = `usage: s0 mount <volume-id> <dir> [--read-only] [--durability close|fsync] [--uid N] [--gid N]
                [--transport lowlevel|fuse-native]

Mounts the volume at <dir> until interrupted. --durability close (default): closing a written
file makes it durable; fsync: only fsync does (faster for scratch data). --uid/--gid: owner of
every new file (default: whoever creates it; with the fuse-native transport, which cannot tell,
the volume's default_posix_uid/gid). --transport: default S0_FUSE_TRANSPORT, else lowlevel.
`

export async function run(args: string[]): Promise<number> {
  const flags = parseFlags(args, {
    boolean: ['read-only', 'help'],
    string: ['durability', 'uid', 'gid', 'transport'],
  })
  if (flags.help) {
    process.stdout.write(USAGE)
    return 0
  }
  const [volumeId, dir] = flags._
  if (!volumeId || !dir || flags._.length > 2) {
    process.stderr.write(USAGE)
    return 2
  }
  const durability = (flags.durability as string | undefined) ?? undefined
  if (durability !== undefined && durability !== 'close' && durability !== 'fsync')
    throw new S0Error('bad_request', '--durability must be close or fsync')
  const id = (name: string): number | undefined => {
    const v = flags[name] as string | undefined
    if (v === undefined) return undefined
    const n = Number(v)
    if (!Number.isInteger(n) || n < 0 || n > 0xfffffffe)
      throw new S0Error('bad_request', `--${name} must be a uid/gid`)
    return n
  }
  const uid = id('uid')
  const gid = id('gid')
  const transport = flags.transport as string | undefined
  if (transport !== undefined && transport !== 'lowlevel' && transport !== 'fuse-native')
    throw new S0Error('bad_request', '--transport must be lowlevel or fuse-native')
  return withChunkStore(
    async ({ config, log, db, store }) => {
      // Stable per host, mount point and state dir: a restarted `s0 mount` takes its lease back.
      const ownerId = `mount-${createHash('sha256').update(`${os.hostname()}:${config.stateDir}:${dir}`).digest('hex').slice(0, 16)}`
      const engine = new VolumeEngine({ db, chunks: store, log, ownerId })
      try {
        const teamId = await engine.catalog.teamOf(volumeId)
        const volume = await engine.catalog.get(teamId, volumeId)
        const mount = await FuseMount.mount(
          await engine.vfs(teamId, volumeId),
          dir,
          {
            readOnly: flags['read-only'] === true,
            durability: durability ?? config.fuseDurability,
            uid: uid ?? volume.defaultPosixUid,
            gid: gid ?? volume.defaultPosixGid,
            forceOwner: uid !== undefined || gid !== undefined,
            transport: transport ?? config.fuseTransport,
          },
          log,
        )
        process.stdout.write(`mounted ${volumeId} at ${mount.dir}; Ctrl-C to unmount\n`)
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve)
          process.once('SIGTERM', resolve)
        })
        await mount.unmount()
        return 0
      } finally {
        await engine.close()
      }
    },
    { logging: 'configured' },
  )
}
