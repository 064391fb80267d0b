// Accounts: teams, API keys and the first-start bootstrap (the domain the auth hook and the
// `s0 apikey` command stand on).
export {
  API_KEY_PREFIX,
  API_KEY_ROLES,
  authenticate,
  createApiKey,
  generateApiKey,
  hashApiKey,
  isApiKeyRole,
  listApiKeys,
  parseBearer,
  revokeApiKey,
  type ApiKeyInfo,
  type ApiKeyRole,
  type AuthContext,
  type CreateApiKeyOptions,
} from './api-keys.js'
export {
  DEFAULT_TEAM_NAME,
  TOKEN_FILE_NAME,
  ensureBootstrap,
  type BootstrapOptions,
  type BootstrapResult,
} from './bootstrap.js'
export { listTeams, type TeamInfo } from './teams.js'
export {
  addSshKey,
  deleteSshKey,
  findTeamSshKey,
  listSshKeys,
  parsePublicKeyLine,
  sshFingerprintSha256,
  type PublicKeyLine,
  type SshKeyInfo,
} from './ssh-keys.js'
