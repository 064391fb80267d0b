// Who may log in to an SSH endpoint, and the login phase of a connection (a deadline, a bound on
// failed attempts). Two policies: users (a team's registered key, or an API key of the team as
// password when S0_SSH_TOKEN_AUTH is on) at `s0 server` and at API replicas; and the cluster
// token at an agent's private endpoint, which only replicas relaying users' sessions reach.
import { createHash, timingSafeEqual } from 'node:crypto'
import type { AuthContext, Connection, ParsedKey, PublicKey } from 'ssh2'
import type { TeamId } from '../../core/ids.js'
import { limits } from '../../core/limits.js'
import type { Logger } from '../../core/log.js'
import type { Login } from './session.js'

/** What the SSH endpoint asks of the accounts domain (wired by the server command). */
export interface SshAuthenticator {
  /** The team's registered key equal to the offered one (the signature is checked here), or undefined. */
  teamKey(teamId: TeamId, offered: PublicKey): Promise<ParsedKey | undefined>
  /** The team of a valid API key, or undefined (token authentication, when enabled). */
  apiKeyTeam(token: string): Promise<TeamId | undefined>
}

type Method = 'publickey' | 'password' | 'keyboard-interactive'

export interface LoginPolicy {
  /** Who logs in with this attempt; 'key-ok' answers a public-key query (no signature yet). */
  authenticate(ctx: AuthContext): Promise<Login | 'key-ok' | undefined>
  methods: Method[]
}

/** The team of a sandbox a login may name (undefined: none, or not one the API shows). */
export type OwnerOf = (sandboxId: string) => Promise<TeamId | undefined>

/**
 * Users. A public-key query (no signature) is answered "this key would do" for every key:
 * answering it only for the sandbox team's keys would tell anyone holding a team's public key
 * which sandbox ids exist. The signed attempt that follows decides.
 */
export function userLogins(o: { ownerOf: OwnerOf; auth: SshAuthenticator; tokenAuth: boolean }): LoginPolicy {
  const tokenLogin = async (sandboxId: string, token: string): Promise<Login | undefined> => {
    const teamId = await o.ownerOf(sandboxId)
    if (!teamId) return undefined
    const keyTeam = await o.auth.apiKeyTeam(token.trim())
    return keyTeam === teamId ? { teamId, sandboxId, method: 'api_key' } : undefined
  }
  return {
    methods: o.tokenAuth ? ['publickey', 'password', 'keyboard-interactive'] : ['publickey'],
    async authenticate(ctx) {
      const sandboxId = ctx.username
      switch (ctx.method) {
        case 'publickey': {
          if (!ctx.signature || !ctx.blob) return 'key-ok'
          const teamId = await o.ownerOf(sandboxId)
          if (!teamId) return undefined
          const key = await o.auth.teamKey(teamId, ctx.key)
          if (!key) return undefined
          if (key.verify(ctx.blob, ctx.signature, ctx.hashAlgo) !== true) return undefined
          return { teamId, sandboxId, method: 'publickey' }
        }
        case 'password':
          return o.tokenAuth ? tokenLogin(sandboxId, ctx.password) : undefined
        case 'keyboard-interactive': {
          if (!o.tokenAuth) return undefined
          const answers = await new Promise<string[]>((resolve) =>
            ctx.prompt([{ prompt: 's0 API key: ', echo: false }], 's0', '', (a) => resolve(a)),
          )
          return tokenLogin(sandboxId, answers[0] ?? '')
        }
        default:
          return undefined
      }
    },
  }
}

/**
 * An agent's private endpoint: the login name is the sandbox id, the password the cluster token
 * (S0_CLUSTER_TOKEN). The replica authenticated the user already; a user's own key or API key is
 * refused here, so reaching an agent's port directly gains nothing.
 */
export function clusterLogins(o: { ownerOf: OwnerOf; token: string }): LoginPolicy {
  return {
    methods: ['password'],
    async authenticate(ctx) {
      if (ctx.method !== 'password' || !sameSecret(ctx.password, o.token)) return undefined
      const teamId = await o.ownerOf(ctx.username)
      return teamId ? { teamId, sandboxId: ctx.username, method: 'cluster' } : undefined
    },
  }
}

function sameSecret(a: string, b: string): boolean {
  // Hashes first: equal lengths for timingSafeEqual, and no length leak.
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest())
}

/**
 * The login phase of a connection: `onLogin` once the client is in. A client that is not in
 * within limits.sshLoginTimeoutMs, or fails limits.sshLoginAttemptsMax times, is dropped.
 */
export function guardLogin(
  client: Connection,
  policy: LoginPolicy,
  log: Logger,
  onLogin: (who: Login) => void,
): void {
  let login: Login | undefined
  let failures = 0
  const loginTimer = setTimeout(() => client.end(), limits.sshLoginTimeoutMs)
  loginTimer.unref()
  client.on('close', () => clearTimeout(loginTimer))
  client.on('authentication', (ctx: AuthContext) => {
    policy.authenticate(ctx).then(
      (who) => {
        if (who === 'key-ok') return ctx.accept() // the client signs with it next
        if (who) {
          login = who
          ctx.accept()
          return
        }
        if (ctx.method !== 'none' && !(ctx.method === 'publickey' && !ctx.signature)) failures++
        if (failures >= limits.sshLoginAttemptsMax) {
          client.end()
          return
        }
        ctx.reject(policy.methods)
      },
      (err: unknown) => {
        log.warn('ssh authentication failed with an error', { err })
        ctx.reject(policy.methods)
      },
    )
  })
  client.on('ready', () => {
    clearTimeout(loginTimer)
    if (!login) return void client.end()
    log.info('ssh login', { sandboxId: login.sandboxId, teamId: login.teamId, method: login.method })
    onLogin(login)
  })
}
