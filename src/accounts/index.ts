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
export {
  createTeam,
  deleteTeam,
  listVisibleTeams,
  updateTeam,
  visibleTeam,
  TEAM_DELETE_RETENTION,
  type ResourceCount,
} from './teams.js'
export { deleteApiKey, forgetKeys, getApiKey } from './api-keys.js'
export {
  ApiRequestMeter,
  ENFORCED_DIMENSIONS,
  checkVolumeStorage,
  getQuota,
  listQuotas,
  setQuota,
  type QuotaSetting,
  type TeamQuotaInfo,
} from './quotas.js'
export {
  USAGE_WINDOW_TYPES,
  UsageRecorder,
  hourPieces,
  isUsageWindowType,
  listUsageWindows,
  type UsageWindowInfo,
  type UsageWindowType,
} from './usage.js'
