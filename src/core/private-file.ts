// Small private files of the server (keys): created once, atomically, readable by the owner only.
import { randomBytes } from 'node:crypto'
import { link, lstat, open, readFile, rm } from 'node:fs/promises'
import path from 'node:path'
import { S0Error } from './errors.js'

/**
 * The content of a file only its owner may read, created with `create()` when absent. The
 * creation is atomic (a private temporary file linked into place), so two processes starting at
 * once agree on one content; an existing file whose mode lets group or others in, or that is
 * not a regular file, is refused rather than used.
 */
export async function readOrCreatePrivateFile(file: string, create: () => Buffer): Promise<Buffer> {
  const existing = await readPrivateFile(file)
  if (existing) return existing
  const tmp = `${file}.tmp-${randomBytes(6).toString('hex')}`
  const handle = await open(tmp, 'wx', 0o600)
  try {
    await handle.writeFile(create())
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    // link(2) fails when the name exists: whoever linked first wins, and everyone reads theirs.
    await link(tmp, file).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err
    })
  } finally {
    await rm(tmp, { force: true })
  }
  await syncDir(path.dirname(file))
  const created = await readPrivateFile(file)
  if (!created) throw new S0Error('config_invalid', `${file} vanished while it was being created`)
  return created
}

async function readPrivateFile(file: string): Promise<Buffer | null> {
  const st = await lstat(file).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null
    throw err
  })
  if (!st) return null
  if (!st.isFile()) throw new S0Error('config_invalid', `${file} must be a regular file (not a link)`)
  if ((st.mode & 0o077) !== 0)
    throw new S0Error(
      'config_invalid',
      `${file} has mode ${(st.mode & 0o777).toString(8)}: only its owner may read it (chmod 600 ${file})`,
    )
  return readFile(file)
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
