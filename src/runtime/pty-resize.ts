// Window size of a terminal exec (ExecSpec.tty). Node has no pty: util-linux `script` gives the
// runtime client (runc, runsc) one, and the client gives the process its own, copying the size
// of the outer one at start and again on each SIGWINCH. So a resize sets the outer terminal's
// size with `stty -F` on its slave (the kernel then sends SIGWINCH to its foreground group, the
// runtime client). The slave is found as fd 0 of `script`'s child, which may not exist yet just
// after the spawn: looked for a bounded time. crun's `exec -t` does not pass resizes on.
import { readFile, readlink } from 'node:fs/promises'
import { S0Error } from '../core/errors.js'
import { limits } from '../core/limits.js'
import { runCli } from './cli.js'

const PTS = /^\/dev\/pts\/\d+$/
const POLL_MS = 10

/** The slave terminal `script` (pid) runs its child on, or undefined once it is gone. */
async function slaveOf(scriptPid: number): Promise<string | undefined> {
  const deadline = Date.now() + limits.ptyResizeWaitMs
  while (Date.now() < deadline) {
    const children = await readFile(`/proc/${scriptPid}/task/${scriptPid}/children`, 'utf8').catch(
      () => undefined,
    )
    if (children === undefined) return undefined // script has exited
    for (const pid of children.trim().split(/\s+/).filter(Boolean)) {
      const tty = await readlink(`/proc/${pid}/fd/0`).catch(() => '')
      if (PTS.test(tty)) return tty
    }
    await new Promise((r) => setTimeout(r, POLL_MS))
  }
  return undefined
}

/** Sets the window size of the terminal a terminal exec's runtime client runs on. */
export async function resizeExecTerminal(scriptPid: number, rows: number, cols: number): Promise<void> {
  if (
    !Number.isInteger(rows) ||
    !Number.isInteger(cols) ||
    rows < 0 ||
    cols < 0 ||
    rows > 65535 ||
    cols > 65535
  )
    throw new S0Error('invalid_request', `bad terminal size ${rows}x${cols}`)
  const tty = await slaveOf(scriptPid)
  if (!tty) return // the process has ended: nothing to resize
  const r = await runCli('stty', ['-F', tty, 'rows', String(rows), 'cols', String(cols)], {
    timeoutMs: limits.ociQueryTimeoutMs,
  })
  // The terminal went away between the look-up and stty (the process ended): not an error.
  if (r.code !== 0 && !/No such file|Input\/output error|No such device/.test(r.stderr))
    throw new S0Error('runtime_failed', `stty on ${tty} failed: ${r.stderr.trim()}`)
}
