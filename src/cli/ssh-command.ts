// `s0 ssh <sandbox-id> [-- command...]`: the system's OpenSSH client, pointed at the server's SSH
// endpoint with the sandbox's login (what GET /api/v1/sandboxes/{id} reports in `ssh`).
// `s0 ssh-key add | list | rm`: the team's SSH public keys (`/users/me/ssh-keys`).
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { ApiClient, ApiError, resolveConnection } from './api-client.js'
import { isoSeconds, table } from './format.js'

const SSH_USAGE = `usage: s0 ssh [-i KEY] [-o OPTION]... <sandbox-id> [-- command [args...]]

Opens a shell in the sandbox (or runs the command) with the system's ssh, on the server's SSH
endpoint. The key must be registered for the team first: s0 ssh-key add ~/.ssh/id_ed25519.pub
  -i KEY     private key file (default: ssh's own, or S0_SSH_KEY)
  -o OPTION  passed to ssh (e.g. -o LocalForward="8080 localhost:8080")
  -t         force a terminal (for a command that needs one)
The host key is learned on first use (StrictHostKeyChecking=accept-new).
`

const KEY_USAGE = `usage:
  s0 ssh-key add <public-key-file> [--name NAME]
      Registers an OpenSSH public key (a .pub file) for the team: it then logs in to every
      sandbox of the team with \`s0 ssh\`. NAME defaults to the key's comment or file name.
  s0 ssh-key list
  s0 ssh-key rm <key-id>
`

interface SshJson {
  host: string
  port: number
  username: string
}

interface SshKeyJson {
  id: string
  name: string
  key_type: string
  fingerprint_sha256: string
  comment?: string
  created_at: string
}

class UsageError extends Error {}

function isUsageError(err: unknown): boolean {
  return err instanceof UsageError || (err as { code?: unknown }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION'
}

/** The argv of ssh for the endpoint (exported for tests). */
export function sshArgv(
  ep: SshJson,
  o: { key?: string; options?: readonly string[]; tty?: boolean; command?: readonly string[] },
): string[] {
  // The user's options first: for each option, ssh keeps the first value it is given.
  return [
    ...(o.options ?? []).flatMap((opt) => ['-o', opt]),
    '-p',
    String(ep.port),
    '-o',
    'StrictHostKeyChecking=accept-new',
    ...(o.key ? ['-i', o.key, '-o', 'IdentitiesOnly=yes'] : []),
    ...(o.tty ? ['-t'] : []),
    `${ep.username}@${ep.host}`,
    ...(o.command && o.command.length > 0 ? ['--', ...o.command] : []),
  ]
}

export async function run(args: string[]): Promise<number> {
  if (args.length === 0 || args[0] === '--help' || args[0] === '-h') {
    process.stdout.write(SSH_USAGE)
    return args.length === 0 ? 2 : 0
  }
  const dash = args.indexOf('--')
  const own = dash < 0 ? args : args.slice(0, dash)
  const command = dash < 0 ? [] : args.slice(dash + 1)
  let parsed
  try {
    parsed = parseArgs({
      args: own,
      options: {
        i: { type: 'string', short: 'i' },
        o: { type: 'string', short: 'o', multiple: true },
        t: { type: 'boolean', short: 't' },
      },
      allowPositionals: true,
      strict: true,
    })
    if (parsed.positionals.length !== 1) throw new UsageError('give exactly one sandbox id')
  } catch (err) {
    if (!isUsageError(err)) throw err
    process.stderr.write(`s0 ssh: ${(err as Error).message}\n\n${SSH_USAGE}`)
    return 2
  }
  const id = parsed.positionals[0] as string
  try {
    const api = new ApiClient(await resolveConnection())
    const sandbox = await api.json<{ ssh?: SshJson }>('GET', `/api/v1/sandboxes/${encodeURIComponent(id)}`)
    if (!sandbox.ssh)
      throw new ApiError(
        'ssh_unavailable',
        'the server runs no SSH endpoint (S0_SSH_ENABLED=false, or its port was taken)',
      )
    const key = parsed.values.i ?? process.env['S0_SSH_KEY']
    const argv = sshArgv(sandbox.ssh, {
      ...(key ? { key: key.replace(/^~(?=\/)/, os.homedir()) } : {}),
      ...(parsed.values.o ? { options: parsed.values.o } : {}),
      ...(parsed.values.t ? { tty: true } : {}),
      command,
    })
    return await new Promise<number>((resolve, reject) => {
      const child = spawn('ssh', argv, { stdio: 'inherit' })
      child.on('error', (err) =>
        reject(
          (err as NodeJS.ErrnoException).code === 'ENOENT'
            ? new ApiError('no_ssh', 'ssh (OpenSSH client) is not installed')
            : err,
        ),
      )
      child.on('close', (code, signal) =>
        resolve(code ?? 128 + (signal ? (os.constants.signals[signal] ?? 1) : 127)),
      )
    })
  } catch (err) {
    if (!(err instanceof ApiError)) throw err
    process.stderr.write(`s0 ssh: ${err.message} [${err.code}]\n`)
    return 1
  }
}

export async function runSshKey(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  if (!sub || sub === '--help' || sub === '-h' || sub === 'help') {
    process.stdout.write(KEY_USAGE)
    return sub ? 0 : 2
  }
  let action: (api: ApiClient) => Promise<void>
  try {
    action = keyAction(sub, rest)
  } catch (err) {
    if (!isUsageError(err)) throw err
    process.stderr.write(`s0 ssh-key: ${(err as Error).message}\n\n${KEY_USAGE}`)
    return 2
  }
  try {
    await action(new ApiClient(await resolveConnection()))
    return 0
  } catch (err) {
    if (!(err instanceof ApiError)) throw err
    process.stderr.write(`s0 ssh-key: ${err.message} [${err.code}]\n`)
    return 1
  }
}

function keyAction(sub: string, rest: string[]): (api: ApiClient) => Promise<void> {
  switch (sub) {
    case 'add': {
      const { values, positionals } = parseArgs({
        args: rest,
        options: { name: { type: 'string' } },
        allowPositionals: true,
        strict: true,
      })
      const file = positionals[0]
      if (positionals.length !== 1 || !file) throw new UsageError('add takes one public key file')
      return async (api) => {
        const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
          throw new ApiError(err.code ?? 'read_failed', `cannot read ${file}: ${err.message}`)
        })
        const comment = text.trim().split(/\s+/).slice(2).join(' ')
        const name = values.name ?? (comment || path.basename(file))
        const key = await api.json<SshKeyJson>('POST', '/users/me/ssh-keys', {
          json: { name, public_key: text.trim() },
        })
        process.stdout.write(`${key.id}  ${key.fingerprint_sha256}  ${key.name}\n`)
      }
    }
    case 'list':
    case 'ls': {
      if (rest.length > 0) throw new UsageError('list takes no arguments')
      return async (api) => {
        const { ssh_keys: keys } = await api.json<{ ssh_keys: SshKeyJson[] }>('GET', '/users/me/ssh-keys')
        process.stdout.write(
          table(
            ['ID', 'NAME', 'TYPE', 'FINGERPRINT', 'CREATED'],
            keys.map((k) => [k.id, k.name, k.key_type, k.fingerprint_sha256, isoSeconds(k.created_at)]),
          ),
        )
      }
    }
    case 'rm':
    case 'remove': {
      const id = rest[0]
      if (rest.length !== 1 || !id) throw new UsageError('rm takes one key id')
      return async (api) => {
        await api.json('DELETE', `/users/me/ssh-keys/${encodeURIComponent(id)}`)
        process.stdout.write(`removed ${id}\n`)
      }
    }
    default:
      throw new UsageError(`unknown subcommand ${JSON.stringify(sub)}`)
  }
}
