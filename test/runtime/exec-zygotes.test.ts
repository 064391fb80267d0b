// Pre-started execs: a command handed to a zygote must behave exactly as a fresh `runc exec` of
// it (argv byte for byte, no shell interpretation, env set and unset, cwd, stdin, exit codes,
// signals), and commands the line cannot carry go the fresh way. Run against real runc.
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { makeDriver } from '../../src/runtime/detect.js'
import { commandLine } from '../../src/runtime/exec-zygotes.js'
import { SandboxRuntime, type SandboxRecord } from '../../src/runtime/sandbox-runtime.js'
import { runtimeFixture, sandboxId, type RuntimeFixture } from './support.js'

describe('exec zygote command lines', () => {
  it('quotes every argument and value, and refuses what a line cannot carry', () => {
    expect(commandLine({ args: ['echo', "it's $HOME; `x`"], env: { A: '1' } }, { A: '1', B: '2' })).toBe(
      `unset B; exec 'echo' 'it'\\''s $HOME; \`x\`'\n`,
    )
    expect(commandLine({ args: ['ls'], env: { A: 'new' }, cwd: '/a b' }, { A: 'old' })).toBe(
      `export A='new'; cd -- '/a b' || exit 126; exec 'ls'\n`,
    )
    expect(commandLine({ args: ['echo', 'two\nlines'], env: {} }, {})).toBeUndefined()
    expect(commandLine({ args: ['-x'], env: {} }, {})).toBeUndefined()
    expect(commandLine({ args: [], env: {} }, {})).toBeUndefined()
    expect(commandLine({ args: ['true'], env: { 'BAD-NAME': 'x' } }, {})).toBeUndefined()
  })
})

describe('exec zygotes on runc', () => {
  let fx: RuntimeFixture
  let sb: SandboxRecord
  // The same sandbox in a runtime without zygotes: every exec there is a fresh `runc exec`.
  let plain: SandboxRuntime
  let plainSb: SandboxRecord
  beforeAll(async () => {
    fx = await runtimeFixture('runc')
    const env = { KEEP: 'k', DROP: 'd' }
    sb = await fx.runtime.start({ id: sandboxId('zyg'), templateRootfs: fx.busybox, env })
    const dir = path.join(fx.stateDir, 'plain')
    plain = new SandboxRuntime({
      stateDir: dir,
      driver: makeDriver('runc', dir),
      cgroupPrefix: fx.cgroupPrefix,
      netnsPrefix: fx.netnsPrefix,
      execZygotesMax: 0,
    })
    plainSb = await plain.start({ id: sandboxId('fresh'), templateRootfs: fx.busybox, env })
  })
  afterAll(async () => {
    if (plainSb) await plain.delete(plainSb.id)
    await fx?.cleanup()
  })

  it('runs commands handed to a zygote exactly as fresh execs', async () => {
    const cases: Array<{ args: string[]; env?: Record<string, string>; cwd?: string; stdin?: string }> = [
      { args: ['sh', '-c', 'echo "[$1]" "[$2]"; exit 3', 'sh', "a 'b' $c", '; rm -rf /'] },
      {
        args: ['sh', '-c', 'echo "$KEEP/$DROP/$NEW"; pwd; cat'],
        env: { NEW: 'n' },
        cwd: '/etc',
        stdin: 'in\n',
      },
      { args: ['/no/such/binary'] },
      { args: ['sh', '-c', 'kill -TERM $$; sleep 5'] },
      { args: ['echo', 'two\nlines'] }, // not carried by a line: fresh in both
    ]
    for (const c of cases) {
      const opts = {
        ...(c.env ? { env: c.env } : {}),
        ...(c.cwd ? { cwd: c.cwd } : {}),
        stdin: c.stdin ?? '',
      }
      await new Promise((r) => setTimeout(r, 200)) // the zygote primed by the last exec is up
      const before = fx.runtime.execStats.zygote
      const viaZygote = await fx.runtime.run(sb.id, c.args, opts)
      const fresh = await plain.run(plainSb.id, c.args, opts)
      expect(fx.runtime.execStats.zygote - before).toBe(c.args[1] === 'two\nlines' ? 0 : 1)
      expect({ out: viaZygote.stdout, failed: viaZygote.exitCode !== 0 }).toEqual({
        out: fresh.stdout,
        failed: fresh.exitCode !== 0,
      })
      // A missing binary: runc reports its own code (255), a shell 127; both are failures.
      if (c.args[0] !== '/no/such/binary') expect(viaZygote.exitCode).toBe(fresh.exitCode)
    }
    expect(plain.execStats.zygote).toBe(0)
  })

  it('drops variables the environment no longer has, and kills through the pid file', async () => {
    await fx.runtime.setEnv(sb.id, { KEEP: 'k2' })
    await new Promise((r) => setTimeout(r, 200))
    const r = await fx.runtime.run(sb.id, ['sh', '-c', 'echo "${KEEP}-${DROP:-unset}"'])
    expect(r.stdout).toBe('k2-unset\n')
    await new Promise((r2) => setTimeout(r2, 200))
    const before = fx.runtime.execStats.zygote
    const p = await fx.runtime.exec(sb.id, ['sleep', '30'])
    expect(fx.runtime.execStats.zygote).toBe(before + 1)
    p.stdin.end()
    await p.kill('SIGKILL')
    const res = await p.wait()
    expect(res.exitCode === 137 || res.signal === 'SIGKILL').toBe(true)
    const ps = await fx.runtime.run(sb.id, ['ps'])
    expect(ps.stdout).not.toContain('sleep 30')
  })
})
