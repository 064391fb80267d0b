// The `s0` command line: dispatches to one module per command, loaded on demand so
// `s0 --help` stays fast.
import { isS0Error } from '../core/errors.js'

interface Command {
  summary: string
  load: () => Promise<{ run: (args: string[]) => Promise<number> }>
}

const COMMANDS: Record<string, Command> = {
  server: {
    summary: 'start the API server (embedded Postgres and local object store by default)',
    load: () => import('./server-command.js'),
  },
  api: {
    summary: 'a stateless API replica of a cluster (docs/DEPLOY.md)',
    load: async () => ({ run: (await import('./server-command.js')).runApi }),
  },
  agent: {
    summary: "one host's sandboxes in a cluster: registers as a node (docs/DEPLOY.md)",
    load: async () => ({ run: (await import('./server-command.js')).runAgent }),
  },
  node: {
    summary: "the cluster's nodes (agents): state, heartbeat, capacity, sandboxes",
    load: () => import('./node-command.js'),
  },
  apikey: { summary: 'create | list | revoke API keys', load: () => import('./apikey-command.js') },
  volume: {
    summary: 'volumes, snapshots and files of a running server (create | ls | cp | cat ...)',
    load: () => import('./volume-command.js'),
  },
  mount: {
    summary: 'mount a volume with FUSE in the foreground: s0 mount <volume-id> <dir>',
    load: () => import('./mount-command.js'),
  },
  sync: {
    summary: 'sync a local folder with a volume both ways, live: s0 sync <dir> <volume-id>[:/path]',
    load: () => import('./sync-command.js'),
  },
  gc: {
    summary: 'collect unreachable chunks and rewrite mostly-garbage packs [--dry-run]',
    load: () => import('./gc-command.js'),
  },
  fsck: {
    summary: 're-hash every chunk and check the index against the packs [--rebuild-index]',
    load: () => import('./fsck-command.js'),
  },
  ssh: {
    summary: 'a shell or a command in a sandbox over SSH: s0 ssh <sandbox-id> [-- command]',
    load: () => import('./ssh-command.js'),
  },
  sandbox: {
    summary:
      'claim | ls | get | rm | exec | run | cp | pause | resume | fork | snapshot | restore | network | events | logs | metrics',
    load: () => import('./sandbox-command.js'),
  },
  events: {
    summary: "verify exported sandbox events offline; print the server's signing public key",
    load: () => import('./events-command.js'),
  },
  'ssh-key': {
    summary: "add | list | rm the team's SSH public keys (they log in to its sandboxes)",
    load: async () => ({ run: (await import('./ssh-command.js')).runSshKey }),
  },
  team: {
    summary: 'create | list | rm teams (an admin key; the new team is managed by its team)',
    load: () => import('./team-command.js'),
  },
  quota: {
    summary: "ls | get | set a team's quotas (active sandboxes, claims, storage, API requests...)",
    load: () => import('./quota-command.js'),
  },
  usage: {
    summary: "the team's hourly usage windows (sandbox seconds, storage GiB-hours, network bytes)",
    load: () => import('./usage-command.js'),
  },
  template: {
    summary: "ls | get | create | rm | from-sandbox: the built-in and the team's templates [--wait]",
    load: () => import('./template-command.js'),
  },
  'credential-source': {
    summary: 'ls | get | create | update | rm credential sources (the secret from a file or stdin)',
    load: () => import('./credential-source-command.js'),
  },
}

export function usage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length))
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  return `usage: s0 <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nConfiguration comes from S0_* environment variables (see README).\n`
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage())
    return name ? 0 : 2
  }
  const cmd = COMMANDS[name]
  if (!cmd) {
    process.stderr.write(`s0: unknown command ${JSON.stringify(name)}\n\n${usage()}`)
    return 2
  }
  try {
    return await (await cmd.load()).run(args)
  } catch (err) {
    if (isS0Error(err)) {
      process.stderr.write(`s0 ${name}: ${err.message} [${err.code}]\n`)
      return 1
    }
    throw err
  }
}
