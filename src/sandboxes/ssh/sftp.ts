// The SFTP subsystem on a sandbox's file tree (files/paths.ts: the same view the files API has,
// mounts included). Every path is taken from the sandbox's `/` (relative ones from /root, the
// login's home), resolved by SandboxTree as the sandbox's kernel would, and every open is
// checked to be where it was resolved: neither `..` nor a symlink leads out to the host. Only
// regular files and directories are opened. OpenSSH's scp speaks SFTP, so scp works through it.
import { constants } from 'node:fs'
import type { FileHandle } from 'node:fs/promises'
import {
  chmod,
  lstat,
  mkdir,
  opendir,
  readlink,
  rename,
  rmdir,
  symlink,
  truncate,
  unlink,
  utimes,
} from 'node:fs/promises'
import path from 'node:path'
import ssh2 from 'ssh2'
import type { Attributes, FileEntry, SFTPWrapper } from 'ssh2'
import { isS0Error, S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'
import {
  fsError,
  joinSandboxPath,
  splitSandboxPath,
  type Resolved,
  type SandboxTree,
} from '../files/paths.js'

const { OPEN_MODE, STATUS_CODE } = ssh2.utils.sftp
const HOME = '/root'

type Stat = Awaited<ReturnType<typeof lstat>>

interface FileSlot {
  kind: 'file'
  fh: FileHandle
}
interface DirSlot {
  kind: 'dir'
  parts: string[]
  host: string
  names: string[] | undefined
  next: number
}

/** A client's path as sandbox components: relative to the home, `..` resolved lexically at `/`. */
function partsOf(p: string): string[] {
  return splitSandboxPath(path.posix.resolve(HOME, p === '' ? '.' : p))
}

function attrsOf(st: Stat): Attributes {
  return {
    mode: Number(st.mode),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    atime: Math.floor(Number(st.atimeMs) / 1000),
    mtime: Math.floor(Number(st.mtimeMs) / 1000),
  }
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

/** `ls -l`'s line, which `sftp ls -l` prints as is. */
function longname(name: string, st: Stat): string {
  const mode = Number(st.mode)
  const type = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : st.isFile() ? '-' : '?'
  let perms = ''
  for (let i = 8; i >= 0; i--) perms += mode & (1 << i) ? 'rwx'[(8 - i) % 3] : '-'
  const t = st.mtime
  const date = `${MONTHS[t.getUTCMonth()]} ${String(t.getUTCDate()).padStart(2)} ${String(t.getUTCHours()).padStart(2, '0')}:${String(t.getUTCMinutes()).padStart(2, '0')}`
  return `${type}${perms} ${String(st.nlink).padStart(4)} ${String(st.uid).padEnd(8)} ${String(st.gid).padEnd(8)} ${String(st.size).padStart(8)} ${date} ${name}`
}

/** An error of ours or of the host file system, as an SFTP status. */
function statusOf(err: unknown, sandboxPath: string): { code: number; message: string } {
  const e = isS0Error(err) ? err : fsError(err, sandboxPath)
  if (!isS0Error(e)) return { code: STATUS_CODE.FAILURE, message: 'failure' }
  switch (e.code) {
    case 'file_not_found':
      return { code: STATUS_CODE.NO_SUCH_FILE, message: e.message }
    case 'forbidden':
    case 'read_only':
      return { code: STATUS_CODE.PERMISSION_DENIED, message: e.message }
    case 'not_supported':
      return { code: STATUS_CODE.OP_UNSUPPORTED, message: e.message }
    default:
      return { code: STATUS_CODE.FAILURE, message: e.message }
  }
}

function openFlags(pflags: number): number {
  const rw = pflags & (OPEN_MODE.READ | OPEN_MODE.WRITE)
  let f =
    rw === (OPEN_MODE.READ | OPEN_MODE.WRITE)
      ? constants.O_RDWR
      : rw === OPEN_MODE.WRITE
        ? constants.O_WRONLY
        : constants.O_RDONLY
  if (pflags & OPEN_MODE.APPEND) f |= constants.O_APPEND
  if (pflags & OPEN_MODE.CREAT) f |= constants.O_CREAT
  if (pflags & OPEN_MODE.TRUNC) f |= constants.O_TRUNC
  if (pflags & OPEN_MODE.EXCL) f |= constants.O_EXCL
  return f
}

/** Serves SFTP requests on `sftp`; each waits for `opening` (the sandbox woken if paused). */
export function serveSftp(sftp: SFTPWrapper, opening: Promise<SandboxTree>, log: Logger): void {
  let tree!: SandboxTree
  const slots = new Map<number, FileSlot | DirSlot>()
  let nextHandle = 1

  const newHandle = (slot: FileSlot | DirSlot): Buffer => {
    if (slots.size >= limits.sftpHandlesMax)
      throw new S0Error('quota_exceeded', `at most ${limits.sftpHandlesMax} open files per SFTP session`)
    const id = nextHandle++
    slots.set(id, slot)
    const b = Buffer.alloc(4)
    b.writeUInt32BE(id)
    return b
  }
  // Read when the request arrives: ssh2's handle buffers are views of a reused packet buffer.
  const idOf = (handle: Buffer): number => (handle.length === 4 ? handle.readUInt32BE(0) : 0)
  const slotOf = (id: number): FileSlot | DirSlot | undefined => slots.get(id)

  /** Runs one request; a failure becomes its status (never a thrown error). */
  // One request at a time, in arrival order, as OpenSSH's sftp-server does: pipelined writes to
  // one file done concurrently left it short at times (a later write's extent lost), and a
  // client may rely on the order of its requests (write, then setstat, then close).
  const ready = opening.then((t) => {
    tree = t
  })
  let queue: Promise<unknown> = Promise.resolve()
  const run = (reqId: number, what: string, op: () => Promise<void>): void => {
    const next = queue.then(() => ready).then(op)
    queue = next.catch(() => undefined)
    next.catch((err: unknown) => {
      const s = statusOf(err, what)
      if (s.code === STATUS_CODE.FAILURE && !isS0Error(err)) log.debug('sftp request failed', { err, what })
      sftp.status(reqId, s.code, s.message)
    })
  }
  const resolve = (p: string, o: { followLast: boolean; allowMissing?: boolean }): Promise<Resolved> =>
    tree.resolve(partsOf(p), o)
  const writable = (r: Resolved): void => {
    if (r.mount.readOnly)
      throw new S0Error(
        'read_only',
        `${joinSandboxPath(r.parts)} is on a read-only mount (${r.mount.containerPath})`,
      )
  }

  sftp.on('OPEN', (reqId: number, filename: string, flags: number, attrs: Partial<Attributes>) =>
    run(reqId, filename, async () => {
      const f = openFlags(flags)
      const creating = (f & constants.O_CREAT) !== 0
      const r = await resolve(filename, { followLast: true, allowMissing: creating })
      if (f & (constants.O_WRONLY | constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC)) writable(r)
      const fh = await tree.openChecked(r, f, attrs.mode !== undefined ? attrs.mode & 0o7777 : 0o644)
      const st = await fh.stat()
      if (!st.isFile()) {
        await fh.close()
        throw new S0Error('path_not_file', `${joinSandboxPath(r.parts)} is not a regular file`)
      }
      sftp.handle(reqId, newHandle({ kind: 'file', fh }))
    }),
  )

  sftp.on('READ', (reqId: number, handle: Buffer, offset: number, len: number) => {
    const h = idOf(handle)
    run(reqId, 'read', async () => {
      const slot = slotOf(h)
      if (slot?.kind !== 'file') return sftp.status(reqId, STATUS_CODE.FAILURE, 'bad handle')
      const buf = Buffer.alloc(Math.min(len, limits.sftpReadBytesMax))
      const { bytesRead } = await slot.fh.read(buf, 0, buf.length, offset)
      if (bytesRead === 0) return sftp.status(reqId, STATUS_CODE.EOF)
      sftp.data(reqId, buf.subarray(0, bytesRead))
    })
  })

  sftp.on('WRITE', (reqId: number, handle: Buffer, offset: number, chunk: Buffer) => {
    // ssh2 hands a view of its packet buffer, reused for the next packet: copied before any wait.
    const data = Buffer.from(chunk)
    const h = idOf(handle)
    run(reqId, 'write', async () => {
      const slot = slotOf(h)
      if (slot?.kind !== 'file') return sftp.status(reqId, STATUS_CODE.FAILURE, 'bad handle')
      let done = 0
      while (done < data.length) {
        const { bytesWritten } = await slot.fh.write(data, done, data.length - done, offset + done)
        done += bytesWritten
      }
      sftp.status(reqId, STATUS_CODE.OK)
    })
  })

  sftp.on('FSTAT', (reqId: number, handle: Buffer) => {
    const h = idOf(handle)
    run(reqId, 'fstat', async () => {
      const slot = slotOf(h)
      if (slot?.kind !== 'file') return sftp.status(reqId, STATUS_CODE.FAILURE, 'bad handle')
      sftp.attrs(reqId, attrsOf(await slot.fh.stat()))
    })
  })

  sftp.on('FSETSTAT', (reqId: number, handle: Buffer, attrs: Partial<Attributes>) => {
    const h = idOf(handle)
    run(reqId, 'fsetstat', async () => {
      const slot = slotOf(h)
      if (slot?.kind !== 'file') return sftp.status(reqId, STATUS_CODE.FAILURE, 'bad handle')
      if (attrs.size !== undefined) await slot.fh.truncate(attrs.size)
      if (attrs.mode !== undefined) await slot.fh.chmod(attrs.mode & 0o7777)
      if (attrs.atime !== undefined && attrs.mtime !== undefined)
        await slot.fh.utimes(attrs.atime, attrs.mtime)
      sftp.status(reqId, STATUS_CODE.OK)
    })
  })

  sftp.on('SETSTAT', (reqId: number, p: string, attrs: Partial<Attributes>) =>
    run(reqId, p, async () => {
      const r = await resolve(p, { followLast: true })
      writable(r)
      if (attrs.size !== undefined) {
        if (!(await lstat(r.host)).isFile()) throw new S0Error('path_not_file', `${p} is not a regular file`)
        await truncate(r.host, attrs.size)
      }
      if (attrs.mode !== undefined) await chmod(r.host, attrs.mode & 0o7777)
      if (attrs.atime !== undefined && attrs.mtime !== undefined)
        await utimes(r.host, attrs.atime, attrs.mtime)
      sftp.status(reqId, STATUS_CODE.OK)
    }),
  )

  sftp.on('CLOSE', (reqId: number, handle: Buffer) => {
    const h = idOf(handle)
    run(reqId, 'close', async () => {
      const slot = slotOf(h)
      if (!slot) return sftp.status(reqId, STATUS_CODE.FAILURE, 'bad handle')
      slots.delete(h)
      if (slot.kind === 'file') await slot.fh.close()
      sftp.status(reqId, STATUS_CODE.OK)
    })
  })

  sftp.on('OPENDIR', (reqId: number, p: string) =>
    run(reqId, p, async () => {
      const r = await resolve(p, { followLast: true })
      if (!(await lstat(r.host)).isDirectory())
        throw new S0Error('path_not_directory', `${p} is not a directory`)
      sftp.handle(reqId, newHandle({ kind: 'dir', parts: r.parts, host: r.host, names: undefined, next: 0 }))
    }),
  )

  sftp.on('READDIR', (reqId: number, handle: Buffer) => {
    const h = idOf(handle)
    run(reqId, 'readdir', async () => {
      const slot = slotOf(h)
      if (slot?.kind !== 'dir') return sftp.status(reqId, STATUS_CODE.FAILURE, 'bad handle')
      if (!slot.names) {
        const names = ['.', '..']
        const dir = await opendir(slot.host)
        for await (const e of dir) {
          if (names.length >= limits.fileListEntriesMax) break
          names.push(e.name)
        }
        slot.names = names
      }
      const out: FileEntry[] = []
      while (slot.next < slot.names.length && out.length < limits.sftpReaddirBatch) {
        const name = slot.names[slot.next++] as string
        // A mount point below (a volume) shows what is mounted there, as `ls` inside shows it.
        const host =
          name === '.'
            ? slot.host
            : name === '..'
              ? path.dirname(slot.host)
              : tree.hostOf([...slot.parts, name]).host
        const st = await lstat(host).catch(() => undefined) // removed meanwhile
        if (st) out.push({ filename: name, longname: longname(name, st), attrs: attrsOf(st) })
      }
      if (out.length === 0) return sftp.status(reqId, STATUS_CODE.EOF)
      sftp.name(reqId, out)
    })
  })

  const statPath = (reqId: number, p: string, followLast: boolean): void =>
    run(reqId, p, async () => {
      const r = await resolve(p, { followLast })
      sftp.attrs(reqId, attrsOf(await lstat(r.host)))
    })
  sftp.on('STAT', (reqId: number, p: string) => statPath(reqId, p, true))
  sftp.on('LSTAT', (reqId: number, p: string) => statPath(reqId, p, false))

  sftp.on('REALPATH', (reqId: number, p: string) =>
    run(reqId, p, async () => {
      const full = joinSandboxPath(partsOf(p))
      sftp.name(reqId, [{ filename: full, longname: full, attrs: {} as Attributes }])
    }),
  )

  sftp.on('REMOVE', (reqId: number, p: string) =>
    run(reqId, p, async () => {
      const r = await resolve(p, { followLast: false })
      if (r.isMountPoint) throw new S0Error('conflict', `${p} is a mount point of the sandbox`)
      writable(r)
      if ((await lstat(r.host)).isDirectory()) throw new S0Error('path_not_file', `${p} is a directory`)
      await unlink(r.host)
      sftp.status(reqId, STATUS_CODE.OK)
    }),
  )

  sftp.on('RMDIR', (reqId: number, p: string) =>
    run(reqId, p, async () => {
      const r = await resolve(p, { followLast: false })
      if (r.isMountPoint || r.parts.length === 0)
        throw new S0Error('conflict', `${p} is a mount point of the sandbox`)
      writable(r)
      await rmdir(r.host)
      sftp.status(reqId, STATUS_CODE.OK)
    }),
  )

  sftp.on('MKDIR', (reqId: number, p: string, attrs: Partial<Attributes>) =>
    run(reqId, p, async () => {
      const r = await resolve(p, { followLast: false, allowMissing: true })
      if (r.exists) throw new S0Error('path_exists', `${p} exists`)
      writable(r)
      await mkdir(r.host, { mode: attrs.mode !== undefined ? attrs.mode & 0o7777 : 0o755 })
      sftp.status(reqId, STATUS_CODE.OK)
    }),
  )

  sftp.on('RENAME', (reqId: number, from: string, to: string) =>
    run(reqId, to, async () => {
      const src = await resolve(from, { followLast: false })
      const dst = await resolve(to, { followLast: false, allowMissing: true })
      if (src.isMountPoint || dst.isMountPoint)
        throw new S0Error('conflict', `${src.isMountPoint ? from : to} is a mount point of the sandbox`)
      if (src.mount !== dst.mount)
        throw new S0Error('cross_device', `${from} and ${to} are on different file systems`)
      writable(src)
      // SFTP v3: a rename onto an existing name fails (OpenSSH's posix-rename is not offered).
      if (dst.exists) throw new S0Error('path_exists', `${to} exists`)
      await rename(src.host, dst.host)
      sftp.status(reqId, STATUS_CODE.OK)
    }),
  )

  sftp.on('READLINK', (reqId: number, p: string) =>
    run(reqId, p, async () => {
      const r = await resolve(p, { followLast: false })
      const target = await readlink(r.host)
      sftp.name(reqId, [{ filename: target, longname: target, attrs: {} as Attributes }])
    }),
  )

  // ssh2 hands (link path, target) whichever order the client used (OpenSSH swaps them). A link
  // is only text: whatever it says is resolved inside the sandbox when followed.
  sftp.on('SYMLINK', (reqId: number, linkPath: string, target: string) =>
    run(reqId, linkPath, async () => {
      const r = await resolve(linkPath, { followLast: false, allowMissing: true })
      if (r.exists) throw new S0Error('path_exists', `${linkPath} exists`)
      writable(r)
      await symlink(target, r.host)
      sftp.status(reqId, STATUS_CODE.OK)
    }),
  )

  const closeAll = (): void => {
    for (const slot of slots.values()) if (slot.kind === 'file') void slot.fh.close().catch(() => undefined)
    slots.clear()
  }
  sftp.on('close', closeAll)
  // The client's EOF ends the session: our side closes too, or OpenSSH's scp and sftp wait on.
  sftp.on('end', () => {
    closeAll()
    exitStatusZero(sftp)
    sftp.end()
  })
  sftp.on('error', (err: unknown) => log.debug('sftp session error', { err }))
}

/**
 * sshd reports exit status 0 when its sftp-server ends; OpenSSH's ssh exits 255 without one, and
 * scp then fails with status 1 after a complete copy. ssh2's SFTP server has no call for it: the
 * channel's own protocol writer (ssh2 1.17, pinned) is used as its Channel.exit does.
 */
function exitStatusZero(sftp: SFTPWrapper): void {
  const s = sftp as unknown as {
    _protocol?: { exitStatus?(id: number, status: number): void }
    outgoing?: { id: number; state: string }
  }
  if (s.outgoing?.state === 'open' || s.outgoing?.state === 'eof') s._protocol?.exitStatus?.(s.outgoing.id, 0)
}
