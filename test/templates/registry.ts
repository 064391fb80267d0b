// A container registry on loopback for the template tests: Debian's `docker-registry` (the CNCF
// distribution registry 2.8) on a free port, storage in a temp dir, plain http. With `auth`, it
// asks for basic auth from an htpasswd file: distribution 2.8 serves htpasswd auth over plain
// http too (its docs recommend TLS, it does not require it), so no certificate is needed; skopeo
// sends the credentials to an http registry when told not to verify TLS, which s0 allows for
// loopback registries. Images are made with umoci (the busybox template's files plus a marker
// file, one layer) and pushed with skopeo.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runCliOk } from '../../src/runtime/cli.js'
import { existsSync } from 'node:fs'

export const REGISTRY_USER = 'alice'
export const REGISTRY_PASSWORD = 's3cret-registry-pw'
/** bcrypt of REGISTRY_PASSWORD (htpasswd -Bbn alice s3cret-registry-pw), so no htpasswd tool is needed. */
const HTPASSWD_LINE = 'alice:$2y$05$K6cJsA73vsRGBMYF1iyreOYcIpE2FUcqzRlg.6kpSwZjwtYgrVxpi'

export interface TestRegistry {
  /** `127.0.0.1:<port>` */
  host: string
  /** Pushes a one-layer image of `rootfs` plus `/marker.txt` holding `marker` as `<repo>:<tag>`. */
  push(repo: string, tag: string, rootfs: string, marker: string): Promise<void>
  close(): Promise<void>
}

export async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as { port: number }).port
  await new Promise<void>((r) => srv.close(() => r()))
  return port
}

const REGISTRY_BIN = '/usr/bin/docker-registry'

/** What the registry tests lack on this host (for missingPrerequisite), or undefined. */
export function registryMissing(): string | undefined {
  return existsSync(REGISTRY_BIN)
    ? undefined
    : 'docker-registry (apt-get install docker-registry; tools/setup-host.sh)'
}

export async function startRegistry(
  opts: { auth?: boolean; htpasswdLine?: string } = {},
): Promise<TestRegistry> {
  const dir = await mkdtemp(path.join(tmpdir(), 's0-registry-'))
  const port = await freePort()
  const host = `127.0.0.1:${port}`
  const auth = opts.auth ? `auth:\n  htpasswd:\n    realm: s0-test\n    path: ${dir}/htpasswd\n` : ''
  if (opts.auth) await writeFile(path.join(dir, 'htpasswd'), (opts.htpasswdLine ?? HTPASSWD_LINE) + '\n')
  await writeFile(
    path.join(dir, 'config.yml'),
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\nhttp:\n  addr: ${host}\n${auth}`,
  )
  const child: ChildProcess = spawn(REGISTRY_BIN, ['serve', path.join(dir, 'config.yml')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)))
  const deadline = Date.now() + 15_000
  for (;;) {
    const up = await fetch(`http://${host}/v2/`).then(
      (r) => r.status === 200 || r.status === 401,
      () => false,
    )
    if (up) break
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL')
      throw new Error(`docker-registry did not start: ${stderr}`)
    }
    await new Promise((r) => setTimeout(r, 100))
  }
  return {
    host,
    push: async (repo, tag, rootfs, marker) => {
      const work = await mkdtemp(path.join(tmpdir(), 's0-image-'))
      try {
        const layout = path.join(work, 'layout')
        const bundle = path.join(work, 'bundle')
        await runCliOk('umoci', ['init', '--layout', layout])
        await runCliOk('umoci', ['new', '--image', `${layout}:t`])
        await runCliOk('umoci', ['unpack', '--image', `${layout}:t`, bundle])
        // `cp -a`: owners, modes, links and device nodes kept (the image tests compare them).
        await runCliOk('cp', ['-a', `${rootfs}/.`, path.join(bundle, 'rootfs')])
        await writeFile(path.join(bundle, 'rootfs', 'marker.txt'), marker + '\n')
        await runCliOk('umoci', ['repack', '--image', `${layout}:t`, bundle])
        const creds = opts.auth ? ['--dest-creds', `${REGISTRY_USER}:${REGISTRY_PASSWORD}`] : []
        await runCliOk('skopeo', [
          'copy',
          '--insecure-policy',
          '--dest-tls-verify=false',
          ...creds,
          `oci:${layout}:t`,
          `docker://${host}/${repo}:${tag}`,
        ])
      } finally {
        await rm(work, { recursive: true, force: true })
      }
    },
    close: async () => {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        await exited
      }
      await rm(dir, { recursive: true, force: true })
    },
  }
}
