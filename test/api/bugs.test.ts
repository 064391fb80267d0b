// A failed assertion in a request is a bug: the API does not turn it into a 500; the process
// crashes with the stack (docs/ERRORS.md). Run in a child process, since it must die.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

const CHILD = path.join(import.meta.dirname, '..', 'support', 'bug-server.ts')

describe('bugs crash loudly', () => {
  it('an AssertionError in a route kills the server process with its stack, and no 500 is sent', () => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', CHILD], { encoding: 'utf8', timeout: 30_000 })
    expect(r.status).not.toBe(0)
    expect(r.stderr).toContain('AssertionError: an invariant broke')
    expect(r.stdout).not.toContain('answered 500')
  })
})
