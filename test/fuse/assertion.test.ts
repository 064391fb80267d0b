// A bug inside a FUSE handler crashes the process that serves the mount, loudly, instead of
// answering EIO and going on: a real `s0 mount` whose volume holds a malformed extent list (as
// a bug writing it would leave) crashes at the first write-back, logging the AssertionError with
// its stack. The errno mapper itself never turns an AssertionError into an errno.
import { execFile } from 'node:child_process'
import * as fs from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AssertionError } from '../../src/core/assert.js'
import { S0Error } from '../../src/core/errors.js'
import { silentLogger } from '../../src/core/log.js'
import { toErrno } from '../../src/fuse/errno.js'
import { encodeExtents } from '../../src/snapshots/extents.js'
import { VolumeEngine } from '../../src/snapshots/engine.js'
import { ROOT_INO } from '../../src/snapshots/types.js'
import { spawnS0 } from '../support/s0-process.js'
import { openTestStore, TEAM_A, type TestStore } from '../support/store.js'

const run = promisify(execFile)
let t: TestStore
let stateDir: string
let dir: string
let volumeId: string

beforeAll(async () => {
  t = await openTestStore({ store: { diskCacheBytes: 0 } })
  stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 's0-fuse-bug-'))
  await fs.chmod(stateDir, 0o755)
  dir = path.join(stateDir, 'mnt')
  // An empty file, then its extent list replaced by one no correct engine writes: a zero-length
  // extent (checkExtents asserts against it when the next write-back splices into the list).
  const engine = new VolumeEngine({ db: t.tdb.db, chunks: t.store, log: silentLogger })
  volumeId = (await engine.create(TEAM_A)).id
  const vfs = await engine.vfs(TEAM_A, volumeId)
  const file = await vfs.create(ROOT_INO, Buffer.from('victim'), 0o644, { uid: 0, gid: 0 })
  await vfs.sync()
  await engine.close()
  const malformed = encodeExtents([{ off: 0, len: 0, hash: Buffer.alloc(32), coff: 0 }])
  const { rowCount } = await t.tdb.db.query('UPDATE inodes SET extents = $1 WHERE ino = $2', [
    malformed,
    file.ino,
  ])
  expect(rowCount).toBeGreaterThan(0)
})

afterAll(async () => {
  // The crashed mount's auto_unmount helper normally detached it already; this covers a run
  // that failed before the crash, and its error (nothing mounted) is the expected case.
  await run('fusermount', ['-uz', dir]).catch(() => undefined)
  await t?.close()
  if (stateDir) await fs.rm(stateDir, { recursive: true, force: true })
})

describe('a bug in a FUSE handler', () => {
  it('is thrown again by the errno mapper, not mapped to EIO', () => {
    const bug = new AssertionError('invariant broken')
    expect(() => toErrno(bug, silentLogger, 'write', '/f')).toThrow(bug)
    expect(toErrno(new S0Error('file_not_found', 'no'), silentLogger, 'getattr', '/f')).toBe(
      -os.constants.errno.ENOENT,
    )
    expect(toErrno(new Error('surprise'), silentLogger, 'read', '/f')).toBe(-os.constants.errno.EIO)
  })

  it('crashes a real `s0 mount` with the assertion and its stack', async () => {
    const s0 = await spawnS0(['mount', volumeId, dir], {
      env: { S0_STATE_DIR: stateDir, DATABASE_URL: t.tdb.url, S0_LOG_LEVEL: 'error' },
      readyOn: 'mounted',
    })
    // Closing the written file makes it durable (durability `close`): the write-back splices
    // the new bytes into the malformed list and the engine's assertion fires in the handler.
    const written = await fs.appendFile(path.join(dir, 'victim'), 'x').then(
      () => 'answered',
      (err: NodeJS.ErrnoException) => err.code,
    )
    const { code } = await s0.exited
    expect(code).toBe(1)
    // The caller saw the file system die (the request in flight is aborted, later ones find no
    // connection), not an ordinary I/O error from a live one.
    expect(['ECONNABORTED', 'ENOTCONN']).toContain(written)
    const stderr = s0.stderr()
    expect(stderr).toContain('bug: assertion failed; crashing')
    expect(stderr).toContain('AssertionError: extent list out of order or malformed')
    expect(stderr).toMatch(/at checkExtents \(.*extents\.ts/)
  }, 120_000)
})
