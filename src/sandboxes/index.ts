// The sandbox domain's public face: the service and the types the API speaks in. Everything
// else in this folder is its inside.
export { SandboxService, type SandboxServiceOptions } from './service.js'
export { EgressStack, type EgressStackOptions } from './egress-stack.js'
export type {
  ClaimRequest,
  ListQuery,
  MountStatus,
  RootfsSnapshotRow,
  SandboxConfig,
  SandboxRow,
  StoredConfig,
  VolumeMountRequest,
} from './rows.js'
export type { SandboxNetworkPolicy } from '../egress/policy/types.js'
export { SANDBOX_STATUSES, VISIBLE_STATUSES, type SandboxStatus } from './status.js'
export type { Context } from './contexts/context.js'
export type { ContextRequest } from './contexts/requests.js'
export type { ContextState, ContextType, ExecOutput, Frame, StreamName } from './contexts/types.js'
export { REPL_ALIASES } from './contexts/repls.js'
export {
  TEMPLATE_ID,
  type RootfsSpec,
  type TemplateCatalog,
  type TemplateRow,
  type TemplateSpec,
  type TemplateCreation,
  type WarmProcessSpec,
} from './templates.js'
export type { FromSandboxRequest } from './template-from-sandbox.js'
export type { RegistryCredentialInfo } from './registry-credentials.js'
export type { SandboxView, ViewMount } from '../runtime/view.js'
export { SandboxTree } from './files/paths.js'
export {
  AppServices,
  type AppService,
  type Exposure,
  type ServiceView,
  type ServicesView,
  parseServiceLabel,
} from './services/index.js'
export { IngressProxy } from './services/ingress.js'
export * as sandboxFiles from './files/files.js'
export type { FileInfo, FileType } from './files/files.js'
export type { TreeWatch, WatchBudget, WatchEvent } from './files/watch.js'
export { LOG_STREAMS, type LogQuery, type LogStream, type StoredLogLine } from './logs.js'
export {
  catalog,
  DURATION_BUCKETS_S,
  METRIC_NAMES,
  STATISTICS,
  type MetricDescriptor,
  type MetricsQuery,
  type MetricsResult,
  type Statistic,
} from './metrics/index.js'
export { SIGNATURE_HEADER as WEBHOOK_SIGNATURE_HEADER } from './webhooks/index.js'
export type {
  EventCursor as SessionEventCursor,
  InputRequest as SessionInputRequest,
  SessionEvent,
  SessionRow,
  SessionSpecInput,
} from './sessions/index.js'
export { checkCursor as checkSessionCursor } from './sessions/index.js'
