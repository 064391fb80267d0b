// `s0 volume`: volumes, snapshots and files of a running server over its HTTP API (never the
// database directly). File contents stream both ways; `<volume-id>:<path>` names a remote path.
import { UsageError, runApiCommand, type Parsed, type Sub } from './api-command.js'
import { downloadTo, uploadFrom } from './file-transfer.js'
import { ApiError, type ApiClient } from './api-client.js'
import { isoSeconds, table } from './format.js'

const USAGE = `usage:
  s0 volume create [--from-snapshot ID] [--uid N] [--gid N]   prints the new volume id
  s0 volume ls                                  list volumes
  s0 volume rm <id>                             delete a volume
  s0 volume fork <id>                           prints the new volume id
  s0 volume snapshot <id> --name N [--description D]
  s0 volume snapshots <id>                      list a volume's snapshots
  s0 volume restore <id> <snapshot-id>
  s0 volume cp <src> <dst>      one side is <id>:<path>; the other a local path, or - (stdin/stdout)
  s0 volume cat <id>:<path>
  s0 volume ls <id>:<path>
  s0 volume mkdir <id>:<path> [-p]
  s0 volume mv <id>:<src> <id>:<dst>
  s0 volume rm <id>:<path>                      delete a file or directory tree
Every command takes --json (print the server's JSON data). The server is S0_API_URL (default
http://$S0_HOST:$S0_PORT); the token is S0_TOKEN, or $S0_STATE_DIR/token.
`

const POSIX_ID_MAX = 4294967295

interface RemotePath {
  volume: string
  path: string
}

interface VolumeJson {
  id: string
  source_volume_id: string | null
  metered_storage_bytes: number
  created_at: string
}
interface SnapshotJson {
  id: string
  name: string
  description: string | null
  size_bytes: number
  created_at: string
}
interface FileJson {
  name: string
  type: 'dir' | 'file' | 'symlink'
  size: number
  mode: string
  mod_time: string
  link_target?: string
}

const vol = (id: string): string => `/api/v1/sandboxvolumes/${encodeURIComponent(id)}`

const SUBS: Record<string, Sub> = {
  create: {
    strings: ['from-snapshot', 'uid', 'gid'],
    arity: [0, 0],
    action: async (api, p) => {
      const body: Record<string, unknown> = {}
      const snap = p.str('from-snapshot')
      if (snap !== undefined) body['snapshot_id'] = snap
      const uid = p.str('uid')
      const gid = p.str('gid')
      if (uid !== undefined) body['default_posix_uid'] = posixId('--uid', uid)
      if (gid !== undefined) body['default_posix_gid'] = posixId('--gid', gid)
      const v = await api.json<VolumeJson>('POST', '/api/v1/sandboxvolumes', { json: body })
      print(p, v, v.id)
    },
  },
  ls: {
    arity: [0, 1],
    action: async (api, p) => {
      const target = p.pos[0]
      if (target === undefined) {
        const vols = await api.json<VolumeJson[]>('GET', '/api/v1/sandboxvolumes')
        print(p, vols, () =>
          table(
            ['ID', 'CREATED', 'USED_BYTES', 'SOURCE'],
            vols.map((v) => [
              v.id,
              isoSeconds(v.created_at),
              String(v.metered_storage_bytes),
              v.source_volume_id ?? '-',
            ]),
          ),
        )
        return
      }
      const r = remote(target)
      const entries = await listFiles(api, r)
      print(p, entries, () =>
        table(
          ['MODE', 'SIZE', 'MTIME', 'NAME'],
          entries.map((f) => [
            modeString(f),
            String(f.size),
            isoSeconds(f.mod_time),
            f.link_target !== undefined ? `${f.name} -> ${f.link_target}` : f.name,
          ]),
        ),
      )
    },
  },
  rm: {
    arity: [1, 1],
    action: async (api, p) => {
      const target = p.pos[0] as string
      const r = isRemote(target) ? remote(target) : undefined
      const data = r
        ? await api.json('DELETE', `${vol(r.volume)}/files`, { query: { path: r.path } })
        : await api.json('DELETE', vol(target))
      print(p, data)
    },
  },
  fork: {
    arity: [1, 1],
    action: async (api, p) => {
      const v = await api.json<VolumeJson>('POST', `${vol(p.pos[0] as string)}/fork`, { json: {} })
      print(p, v, v.id)
    },
  },
  snapshot: {
    strings: ['name', 'description'],
    arity: [1, 1],
    action: async (api, p) => {
      const name = p.str('name')
      if (name === undefined) throw new UsageError('snapshot needs --name')
      const description = p.str('description')
      const s = await api.json<SnapshotJson>('POST', `${vol(p.pos[0] as string)}/snapshots`, {
        json: description === undefined ? { name } : { name, description },
      })
      print(p, s, s.id)
    },
  },
  snapshots: {
    arity: [1, 1],
    action: async (api, p) => {
      const snaps = await api.json<SnapshotJson[]>('GET', `${vol(p.pos[0] as string)}/snapshots`)
      print(p, snaps, () =>
        table(
          ['ID', 'NAME', 'CREATED', 'SIZE_BYTES', 'DESCRIPTION'],
          snaps.map((s) => [
            s.id,
            s.name,
            isoSeconds(s.created_at),
            String(s.size_bytes),
            s.description ?? '',
          ]),
        ),
      )
    },
  },
  restore: {
    arity: [2, 2],
    action: async (api, p) => {
      const [id, snap] = p.pos as [string, string]
      print(p, await api.json('POST', `${vol(id)}/snapshots/${encodeURIComponent(snap)}/restore`))
    },
  },
  cp: {
    arity: [2, 2],
    action: async (api, p) => {
      const [src, dst] = p.pos as [string, string]
      if (isRemote(src) === isRemote(dst))
        throw new UsageError('cp needs exactly one side as <volume-id>:<path>')
      // Streamed both ways (file-transfer.ts); a download lands whole or not at all.
      if (isRemote(dst)) {
        const r = remote(dst)
        print(p, await uploadFrom(api, `${vol(r.volume)}/files`, src, r.path))
      } else {
        const r = remote(src)
        await downloadTo(api, `${vol(r.volume)}/files`, r.path, dst)
      }
    },
  },
  cat: {
    arity: [1, 1],
    action: async (api, p) => {
      const r = remote(p.pos[0] as string)
      await downloadTo(api, `${vol(r.volume)}/files`, r.path, '-')
    },
  },
  mkdir: {
    booleans: ['parents'],
    short: { p: 'parents' },
    arity: [1, 1],
    action: async (api, p) => {
      const r = remote(p.pos[0] as string)
      const query = { path: r.path, mkdir: 'true', recursive: String(p.bool('parents')) }
      print(p, await api.json('POST', `${vol(r.volume)}/files`, { query }))
    },
  },
  mv: {
    arity: [2, 2],
    action: async (api, p) => {
      const [from, to] = (p.pos as [string, string]).map(remote) as [RemotePath, RemotePath]
      if (from.volume !== to.volume) throw new UsageError('mv works within one volume')
      const json = { source: from.path, destination: to.path }
      print(p, await api.json('POST', `${vol(from.volume)}/files/move`, { json }))
    },
  },
}

export function run(args: string[]): Promise<number> {
  return runApiCommand('volume', USAGE, SUBS, args)
}

/** `<volume-id>:<path>`: a colon before any slash, so `./a:b` stays a local path. */
function isRemote(arg: string): boolean {
  return /^[^/:]+:/.test(arg)
}

function remote(arg: string): RemotePath {
  const colon = arg.indexOf(':')
  if (!isRemote(arg)) throw new UsageError(`expected <volume-id>:<path>, got ${JSON.stringify(arg)}`)
  const p = arg.slice(colon + 1)
  return { volume: arg.slice(0, colon), path: p.startsWith('/') ? p : `/${p}` }
}

function posixId(flag: string, value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value) || n > POSIX_ID_MAX)
    throw new UsageError(`${flag} must be an integer in [0, ${POSIX_ID_MAX}], got ${JSON.stringify(value)}`)
  return n
}

/** --json prints the data as the server sent it; otherwise `human` (a line, or a builder). */
function print(p: Parsed, data: unknown, human?: string | (() => string)): void {
  if (p.json) process.stdout.write(JSON.stringify(data, null, 2) + '\n')
  else if (typeof human === 'string') process.stdout.write(human + '\n')
  else if (human) process.stdout.write(human())
}

/** A directory's entries; a file path lists just that file, like ls(1). */
async function listFiles(api: ApiClient, r: RemotePath): Promise<FileJson[]> {
  try {
    const data = await api.json<{ entries: FileJson[] }>('GET', `${vol(r.volume)}/files/list`, {
      query: { path: r.path },
    })
    return data.entries
  } catch (err) {
    if (!(err instanceof ApiError) || err.code !== 'path_not_directory') throw err
    return [await api.json<FileJson>('GET', `${vol(r.volume)}/files/stat`, { query: { path: r.path } })]
  }
}

function modeString(f: FileJson): string {
  const bits = parseInt(f.mode, 8)
  const rwx = ['r', 'w', 'x']
  let out = f.type === 'dir' ? 'd' : f.type === 'symlink' ? 'l' : '-'
  for (let i = 8; i >= 0; i--) out += bits & (1 << i) ? rwx[(8 - i) % 3] : '-'
  return out
}
