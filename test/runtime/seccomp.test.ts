// The seccomp profile of runc and crun sandboxes (src/runtime/seccomp.ts): as data (deny by
// default, nothing dangerous allowed by any rule) and from inside real sandboxes: every syscall
// the threat model names fails (python ctypes issues them raw in the Debian template; busybox's
// `unshare` and `mount` too), while what sandboxes run every day still works. runsc keeps gVisor's
// own (its bundle carries none).
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { DriverName } from '../../src/runtime/driver.js'
import type { SandboxRecord } from '../../src/runtime/sandbox-runtime.js'
import { TemplateStore } from '../../src/runtime/templates.js'
import {
  CLONE_NAMESPACE_FLAGS,
  DENIED_SYSCALLS,
  sandboxSeccomp,
  type OciSeccomp,
} from '../../src/runtime/seccomp.js'
import { runtimeFixture, sandboxId, TEMPLATE_CACHE_DIR, type RuntimeFixture } from './support.js'
import { missingPrerequisite } from './template-cache.js'

const CLONE_NEWUSER = 0x10000000
const SIGCHLD = 17

describe('seccomp profile (data)', () => {
  const p = sandboxSeccomp()
  const allowed = new Set(p.syscalls.filter((r) => r.action === 'SCMP_ACT_ALLOW').flatMap((r) => r.names))

  it('denies by default with EPERM; no rule allows a syscall the threat model names', () => {
    expect(p).toMatchObject({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 1 })
    for (const name of [
      ...DENIED_SYSCALLS,
      'unshare',
      'setns',
      'keyctl',
      'add_key',
      'request_key',
      'userfaultfd',
      'perf_event_open',
      'io_uring_setup',
      'io_uring_enter',
      'io_uring_register',
      'kexec_load',
      'init_module',
      'finit_module',
      'delete_module',
      'bpf',
      'mount',
      'umount2',
      'pivot_root',
      'move_mount',
      'fsopen',
      'fsmount',
      'open_tree',
      'ptrace',
      'swapon',
      'swapoff',
      'reboot',
    ])
      expect(allowed.has(name), name).toBe(false)
    // Only the native architecture: no i386 / x32 entry points to the kernel.
    expect(p.architectures).toHaveLength(1)
  })

  it('clone only without namespace flags, clone3 ENOSYS, no AF_VSOCK, personality whitelisted', () => {
    const rules = (name: string): OciSeccomp['syscalls'] => p.syscalls.filter((r) => r.names.includes(name))
    expect(rules('clone')).toEqual([
      {
        names: ['clone'],
        action: 'SCMP_ACT_ALLOW',
        args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
      },
    ])
    expect(CLONE_NAMESPACE_FLAGS & CLONE_NEWUSER).toBe(CLONE_NEWUSER)
    expect(rules('clone3')).toEqual([{ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }])
    expect(rules('socket')[0]?.args).toEqual([{ index: 0, value: 40, op: 'SCMP_CMP_NE' }])
    const personalities = rules('personality').map((r) => r.args?.[0]?.value)
    expect(personalities).toEqual([0, 8, 0x20000, 0x20008, 0xffffffff])
    for (const everyday of ['read', 'openat', 'execve', 'mmap', 'futex', 'epoll_wait', 'socketpair', 'statx'])
      expect(allowed.has(everyday), everyday).toBe(true)
  })
})

/** Syscall numbers per architecture (the test issues them raw). */
const NR: Record<string, Record<string, number>> = {
  x64: {
    unshare: 272,
    setns: 308,
    keyctl: 250,
    add_key: 248,
    request_key: 249,
    userfaultfd: 323,
    perf_event_open: 298,
    io_uring_setup: 425,
    bpf: 321,
    mount: 165,
    ptrace: 101,
    clone: 56,
    clone3: 435,
    socket: 41,
    kexec_load: 246,
    init_module: 175,
    getpid: 39,
  },
  arm64: {
    unshare: 97,
    setns: 268,
    keyctl: 219,
    add_key: 217,
    request_key: 218,
    userfaultfd: 282,
    perf_event_open: 241,
    io_uring_setup: 425,
    bpf: 280,
    mount: 40,
    ptrace: 117,
    clone: 220,
    clone3: 435,
    socket: 198,
    kexec_load: 104,
    init_module: 105,
    getpid: 172,
  },
}

/**
 * Each call with arguments that succeed (or fail with another errno) without seccomp, so that
 * EPERM says the filter refused it: measured on this host, runc without a profile gave
 * unshare 0, keyctl a keyring id, io_uring_setup an fd, perf_event_open EACCES, bpf EINVAL,
 * ptrace(TRACEME) 0, AF_VSOCK socket an fd.
 */
function probeScript(nr: Record<string, number>): string {
  return `
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
out = {}
def call(name, nr, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    if r == 0 and name.startswith('clone'):
        os._exit(0)  # a child (only if the filter let it through): leave at once
    out[name] = 'ok' if r >= 0 else errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))
buf = ctypes.create_string_buffer(256)
p = ctypes.addressof(buf)
call('unshare_newuser', ${nr['unshare']}, ${CLONE_NEWUSER})
call('clone_newuser', ${nr['clone']}, ${CLONE_NEWUSER | SIGCHLD}, 0, 0, 0, 0)
call('clone3', ${nr['clone3']}, p, 88)
call('setns', ${nr['setns']}, 0, 0)
call('keyctl', ${nr['keyctl']}, 0, -3, 0)
call('add_key', ${nr['add_key']}, 0, 0, 0, 0, 0)
call('request_key', ${nr['request_key']}, 0, 0, 0, 0)
call('userfaultfd', ${nr['userfaultfd']}, 0)
call('perf_event_open', ${nr['perf_event_open']}, p, 0, -1, -1, 0)
call('io_uring_setup', ${nr['io_uring_setup']}, 8, p)
call('bpf', ${nr['bpf']}, 0, 0, 0)
call('mount', ${nr['mount']}, 0, 0, 0, 0, 0)
call('ptrace', ${nr['ptrace']}, 0, 0, 0, 0)
call('socket_vsock', ${nr['socket']}, 40, 1, 0)
call('kexec_load', ${nr['kexec_load']}, 0, 0, 0, 0)
call('init_module', ${nr['init_module']}, 0, 0, 0)
call('getpid', ${nr['getpid']})
call('socket_inet', ${nr['socket']}, 2, 1, 0)
print(json.dumps(out))
`
}

/** What ordinary work needs: every program of the Debian template, processes, threads, pipes. */
const EVERYDAY = [
  'set -e',
  'python3 -c "import multiprocessing as m, threading; print(sum(m.Pool(2).map(abs, [-1, -2])))"',
  "node -e \"const w = new (require('worker_threads').Worker)('1', { eval: true }); w.on('exit', (c) => console.log('worker', c))\"",
  "bash -c 'echo $(( 6 * 7 ))'",
  'cd /root && git init -q repo && cd repo && echo a > a && git add a',
  'git -c user.email=a@b -c user.name=n commit -qm first && git log --format=%s',
  'curl -s file:///etc/hostname >/dev/null && echo curl-ok',
  'python3 -c "import subprocess; print(subprocess.run([\'true\']).returncode)"',
].join('\n')

function hardeningSuite(name: DriverName): void {
  describe(`seccomp inside a sandbox: ${name}`, () => {
    let fx: RuntimeFixture
    let bb: SandboxRecord
    let debian: SandboxRecord | undefined

    beforeAll(async () => {
      fx = await runtimeFixture(name)
      expect(fx.probe, JSON.stringify(fx.probe)).toMatchObject({ ok: true })
      bb = await fx.runtime.start({ id: sandboxId(`sc-bb-${name}`), templateRootfs: fx.busybox })
      const store = new TemplateStore({ dir: TEMPLATE_CACHE_DIR })
      if (await store.isReady('default'))
        debian = await fx.runtime.start({
          id: sandboxId(`sc-deb-${name}`),
          templateRootfs: await store.get('default'),
          resources: { memoryBytes: 512 * 1024 * 1024, pidsMax: 256 },
        })
    })

    afterAll(async () => {
      await fx?.cleanup()
    })

    it('the bundle carries the profile', async () => {
      const config = JSON.parse(await readFile(path.join(bb.dir, 'config.json'), 'utf8')) as {
        linux: { seccomp?: OciSeccomp }
      }
      expect(config.linux.seccomp).toEqual(sandboxSeccomp())
    })

    it('busybox: unshare -U and mount fail; ordinary work goes on', async () => {
      const u = await fx.runtime.run(bb.id, ['unshare', '-U', 'true'])
      expect(u.exitCode).not.toBe(0)
      expect(u.stderr).toMatch(/Operation not permitted/)
      const m = await fx.runtime.run(bb.id, ['mount', '-t', 'tmpfs', 'none', '/mnt'])
      expect(m.exitCode).not.toBe(0)
      const ok = await fx.runtime.run(bb.id, [
        'sh',
        '-c',
        'echo data > /root/f && cat /root/f && (sleep 0.01 & wait) && ls / | grep -c . >/dev/null && echo done',
      ])
      expect(ok).toMatchObject({ exitCode: 0, stdout: 'data\ndone\n', stderr: '' })
    })

    it('every syscall the threat model names fails from inside (raw, through python ctypes)', async ({
      skip,
    }) => {
      if (missingPrerequisite(debian ? undefined : `template default is not built in ${TEMPLATE_CACHE_DIR}`))
        skip()
      const nr = NR[process.arch]
      if (!nr) throw new Error(`no syscall numbers for ${process.arch}`)
      const r = await fx.runtime.run((debian as SandboxRecord).id, ['python3', '-c', probeScript(nr)])
      expect(r.stderr).toBe('')
      expect(JSON.parse(r.stdout)).toEqual({
        unshare_newuser: 'EPERM',
        clone_newuser: 'EPERM',
        clone3: 'ENOSYS', // as Docker: glibc falls back to clone, whose flags the filter sees
        setns: 'EPERM',
        keyctl: 'EPERM',
        add_key: 'EPERM',
        request_key: 'EPERM',
        userfaultfd: 'EPERM',
        perf_event_open: 'EPERM',
        io_uring_setup: 'EPERM',
        bpf: 'EPERM',
        mount: 'EPERM',
        ptrace: 'EPERM',
        socket_vsock: 'EPERM',
        kexec_load: 'EPERM',
        init_module: 'EPERM',
        getpid: 'ok',
        socket_inet: 'ok',
      })
      const u = await fx.runtime.run((debian as SandboxRecord).id, ['unshare', '-Ur', 'id'])
      expect(u.exitCode).not.toBe(0)
      expect(u.stderr).toMatch(/Operation not permitted/)
    })

    it('python, node, bash, git and curl still work (processes, threads, workers)', async ({ skip }) => {
      if (missingPrerequisite(debian ? undefined : `template default is not built in ${TEMPLATE_CACHE_DIR}`))
        skip()
      const r = await fx.runtime.run((debian as SandboxRecord).id, ['bash', '-c', EVERYDAY], {
        timeoutMs: 120_000,
      })
      expect(r.stderr).toBe('')
      expect(r.stdout).toBe('3\nworker 0\n42\nfirst\ncurl-ok\n0\n')
      expect(r.exitCode).toBe(0)
    })

    it('freeze and thaw (the capture of a running sandbox) still work', async () => {
      await fx.runtime.freeze(bb.id)
      expect((await fx.runtime.status(bb.id)).status).toBe('paused')
      await fx.runtime.thaw(bb.id)
      expect((await fx.runtime.run(bb.id, ['echo', 'thawed'])).stdout).toBe('thawed\n')
    })
  })
}

hardeningSuite('runc')
hardeningSuite('crun')

describe('seccomp: runsc keeps gVisor’s own', () => {
  let fx: RuntimeFixture

  beforeAll(async () => {
    fx = await runtimeFixture('runsc')
    expect(fx.probe, JSON.stringify(fx.probe)).toMatchObject({ ok: true })
  })

  afterAll(async () => {
    await fx?.cleanup()
  })

  it('its bundle has no seccomp section, and it runs', async () => {
    const sb = await fx.runtime.start({ id: sandboxId('sc-runsc'), templateRootfs: fx.busybox })
    const config = JSON.parse(await readFile(path.join(sb.dir, 'config.json'), 'utf8')) as {
      linux: Record<string, unknown>
    }
    expect(config.linux['seccomp']).toBeUndefined()
    expect((await fx.runtime.run(sb.id, ['echo', 'hi'])).stdout).toBe('hi\n')
  })
})
