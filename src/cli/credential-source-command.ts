// `s0 credential-source ls | get | create | update | rm`: the team's credential sources (secrets
// the egress proxy injects; a sandbox never sees them). A secret is read from a file or stdin,
// never from an argument: arguments show in `ps`, shell history and CI logs.
import { ApiError } from './api-client.js'
import { print, runApiCommand, UsageError, type Parsed, type Sub } from './api-command.js'
import { readLocalText } from './file-transfer.js'
import { isoSeconds, table } from './format.js'

/** The spec member each resolver kind takes (the wire's camelCase). */
const MEMBERS: Record<string, string> = {
  static_headers: 'staticHeaders',
  static_tls_client_certificate: 'staticTLSClientCertificate',
  static_username_password: 'staticUsernamePassword',
  static_ssh_private_key: 'staticSSHPrivateKey',
}

const USAGE = `usage:
  s0 credential-source ls
  s0 credential-source get <name>
  s0 credential-source create <name> --kind KIND (--secret-file F | --secret-stdin)
  s0 credential-source update <name> [--kind KIND] (--secret-file F | --secret-stdin)
  s0 credential-source rm <name>
KIND is ${Object.keys(MEMBERS).join(', ')}.
The secret is the kind's spec as JSON, e.g. for static_headers
  {"values": {"Authorization": "Bearer ..."}}
(or the whole spec, {"staticHeaders": {...}}). It is read from the file or from stdin, never
from the command line. The server keeps it sealed and never returns it; \`ls\`/\`get\` show the
metadata. Every command takes --json. The server is S0_API_URL with S0_TOKEN (an admin key to
write), or the state directory's token file.
`

interface SourceJson {
  name: string
  resolverKind: string
  currentVersion: number
  status: string
  updatedAt: string
}

const src = (name: string): string => `/api/v1/credential-sources/${encodeURIComponent(name)}`

/** Flags that would put a secret on the command line: refused by name, with the way to do it. */
const ARGV_SECRETS = ['secret', 'value', 'password', 'token']

async function secretSpec(p: Parsed, kind: string): Promise<unknown> {
  const member = MEMBERS[kind]
  if (!member) throw new UsageError(`--kind must be one of ${Object.keys(MEMBERS).join(', ')}`)
  const file = p.str('secret-file')
  const stdin = p.bool('secret-stdin')
  if ((file === undefined) === !stdin)
    throw new UsageError('give the secret with exactly one of --secret-file F or --secret-stdin')
  // `--secret-file -` is stdin as well.
  const text = await readLocalText(stdin ? '-' : (file as string))
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    // The message never quotes the input: it is a secret.
    throw new ApiError('invalid_json', `the secret is not JSON (${(err as Error).name})`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new ApiError('invalid_json', 'the secret must be a JSON object')
  const keys = Object.keys(value)
  return keys.length === 1 && keys[0] === member ? value : { [member]: value }
}

function refuseArgvSecret(p: Parsed): void {
  for (const f of ARGV_SECRETS)
    if (p.str(f) !== undefined)
      throw new UsageError(
        `--${f}: a secret is never taken from the command line (it would show in ps and shell history); use --secret-file F or --secret-stdin`,
      )
}

const WRITE_FLAGS = ['kind', 'secret-file', ...ARGV_SECRETS]

const SUBS: Record<string, Sub> = {
  ls: {
    arity: [0, 0],
    action: async (api, p) => {
      const sources = await api.json<SourceJson[]>('GET', '/api/v1/credential-sources')
      print(p, sources, () =>
        table(
          ['NAME', 'KIND', 'VERSION', 'STATUS', 'UPDATED'],
          sources.map((s) => [
            s.name,
            s.resolverKind,
            String(s.currentVersion),
            s.status,
            isoSeconds(s.updatedAt),
          ]),
        ),
      )
    },
  },
  get: {
    arity: [1, 1],
    action: async (api, p) => {
      const s = await api.json<SourceJson>('GET', src(p.pos[0] as string))
      print(
        p,
        s,
        () =>
          `name     ${s.name}\nkind     ${s.resolverKind}\nversion  ${s.currentVersion}\nstatus   ${s.status}\nupdated  ${isoSeconds(s.updatedAt)}\n`,
      )
    },
  },
  create: {
    arity: [1, 1],
    strings: WRITE_FLAGS,
    booleans: ['secret-stdin'],
    action: async (api, p) => {
      refuseArgvSecret(p)
      const kind = p.str('kind')
      if (kind === undefined) throw new UsageError('create needs --kind')
      const name = p.pos[0] as string
      const spec = await secretSpec(p, kind)
      const s = await api.json<SourceJson>('POST', '/api/v1/credential-sources', {
        json: { name, resolverKind: kind, spec },
      })
      print(p, s, () => `${s.name} (version ${s.currentVersion})\n`)
    },
  },
  update: {
    arity: [1, 1],
    strings: WRITE_FLAGS,
    booleans: ['secret-stdin'],
    action: async (api, p) => {
      refuseArgvSecret(p)
      const name = p.pos[0] as string
      // The kind stays what it was unless given.
      const kind = p.str('kind') ?? (await api.json<SourceJson>('GET', src(name))).resolverKind
      const spec = await secretSpec(p, kind)
      const s = await api.json<SourceJson>('PUT', src(name), { json: { name, resolverKind: kind, spec } })
      print(p, s, () => `${s.name} (version ${s.currentVersion})\n`)
    },
  },
  rm: {
    arity: [1, 1],
    action: async (api, p) => {
      const r = await api.json<{ message: string }>('DELETE', src(p.pos[0] as string))
      print(p, r, () => '')
    },
  },
}
SUBS['list'] = SUBS['ls'] as Sub

export function run(args: string[]): Promise<number> {
  return runApiCommand('credential-source', USAGE, SUBS, args)
}
