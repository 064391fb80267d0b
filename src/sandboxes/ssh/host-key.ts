// The SSH endpoint's host key: one ed25519 key per server, generated on first start into
// `<stateDir>/ssh/ssh_host_ed25519_key` (OpenSSH format, mode 0600, a wider mode is refused),
// so clients see the same key across restarts.
import { mkdir } from 'node:fs/promises'
import path from 'node:path'
import { readOrCreatePrivateFile } from '../../egress/credentials/key.js'
import { generateEd25519 } from '../../core/ssh-keygen.js'

export const SSH_HOST_KEY_FILE = 'ssh_host_ed25519_key'

export async function loadSandboxSshHostKey(stateDir: string): Promise<string> {
  const dir = path.join(stateDir, 'ssh')
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const bytes = await readOrCreatePrivateFile(path.join(dir, SSH_HOST_KEY_FILE), () =>
    Buffer.from(generateEd25519({ comment: 's0 sandbox ssh' }).private),
  )
  return bytes.toString('utf8')
}
