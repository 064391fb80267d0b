// Runs one CLI command module in-process (its `run(args)`) and captures what it writes, as a
// terminal would see it: the command reads its configuration from the (stubbed) environment.
import { vi } from 'vitest'

export interface CommandResult {
  code: number
  /** stdout as text and as bytes (`s0 volume cat` is binary). */
  out: string
  bytes: Buffer
  err: string
}

export async function runCommand(
  run: (args: string[]) => Promise<number>,
  args: string[],
): Promise<CommandResult> {
  const out: Buffer[] = []
  const err: string[] = []
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    out.push(Buffer.from(chunk))
    return true
  })
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => (err.push(String(chunk)), true))
  try {
    const code = await run(args)
    const bytes = Buffer.concat(out)
    return { code, out: bytes.toString('utf8'), bytes, err: err.join('') }
  } finally {
    o.mockRestore()
    e.mockRestore()
  }
}
