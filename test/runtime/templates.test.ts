// Template builders: busybox (no network), an OCI image archive imported with skopeo + umoci,
// and the Debian `default` template (built once by test/global-templates.ts into the shared
// cache; missing, it fails under CI=true and is skipped elsewhere). How long a busybox build
// takes is a bench figure (template_build_busybox), not a test.
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { runCliOk } from '../../src/runtime/cli.js'
import { TemplateStore } from '../../src/runtime/templates.js'
import { runtimeFixture, sandboxId, TEMPLATE_CACHE_DIR, type RuntimeFixture } from './support.js'
import { missingPrerequisite } from './template-cache.js'

describe('templates', () => {
  let fx: RuntimeFixture
  let scratch: string

  beforeAll(async () => {
    fx = await runtimeFixture('runc')
    scratch = await mkdtemp(path.join(os.tmpdir(), 's0-tmpl-'))
  })

  afterAll(async () => {
    await fx?.cleanup()
    await rm(scratch, { recursive: true, force: true })
  })

  it('builds busybox, serialising concurrent builds', async () => {
    const store = new TemplateStore({ dir: path.join(scratch, 'cache') })
    const [a, b] = await Promise.all([store.ensure('busybox'), store.ensure('busybox')])
    expect(a).toBe(b)
    await access(path.join(a, 'bin/sh'))
    await access(path.join(a, 'proc'))
    const rebuilt = await store.ensure('busybox', { rebuild: true })
    expect(rebuilt).toBe(a)
    await expect(store.get('nope')).rejects.toMatchObject({ code: 'template_not_found' })
  })

  it('imports an OCI image archive (umoci-built here from the busybox rootfs)', async () => {
    const img = path.join(scratch, 'img')
    const ub = path.join(scratch, 'ub')
    await runCliOk('umoci', ['init', '--layout', img])
    await runCliOk('umoci', ['new', '--image', `${img}:bb`])
    await runCliOk('umoci', ['unpack', '--image', `${img}:bb`, ub])
    await runCliOk('cp', ['-a', `${fx.busybox}/.`, path.join(ub, 'rootfs')])
    await writeFile(path.join(ub, 'rootfs', 'etc', 'from-image'), 'yes\n')
    await runCliOk('umoci', ['repack', '--image', `${img}:bb`, ub])
    const tar = path.join(scratch, 'bb.tar')
    await runCliOk('tar', ['-C', img, '-cf', tar, '.'])

    const store = new TemplateStore({ dir: path.join(scratch, 'cache') })
    const rootfs = await store.importImage('imported', `oci-archive:${tar}:bb`)
    const sb = await fx.runtime.start({ id: sandboxId('imported'), templateRootfs: rootfs })
    const r = await fx.runtime.run(sb.id, ['cat', '/etc/from-image'])
    expect(r.stdout).toBe('yes\n')
    await fx.runtime.delete(sb.id)
  })

  it('the Debian default template (built by the global setup) runs python3, git, bash', async ({ skip }) => {
    const store = new TemplateStore({ dir: TEMPLATE_CACHE_DIR })
    const ready = await store.isReady('default')
    if (missingPrerequisite(ready ? undefined : `template default is not built in ${TEMPLATE_CACHE_DIR}`))
      skip()
    const rootfs = await store.get('default')
    const sb = await fx.runtime.start({ id: sandboxId('debian'), templateRootfs: rootfs })
    const r = await fx.runtime.run(sb.id, [
      'bash',
      '-c',
      'python3 -c "print(6*7)"; git --version; ls / >/dev/null && echo ls-ok',
    ])
    expect(r.stdout).toMatch(/^42\ngit version 2\.\d+.*\nls-ok\n$/)
    await fx.runtime.delete(sb.id)

    // runsc's statx quirk: `ls PATH` and `stat` work through the busybox links on PATH.
    const gv = await runtimeFixture('runsc')
    try {
      const g = await gv.runtime.start({ id: sandboxId('debian-gvisor'), templateRootfs: rootfs })
      const s = await gv.runtime.run(g.id, [
        'bash',
        '-c',
        'ls /usr >/dev/null && stat /etc/hostname >/dev/null && echo ok',
      ])
      expect(s.stdout).toBe('ok\n')
    } finally {
      await gv.cleanup()
    }
  })
})
