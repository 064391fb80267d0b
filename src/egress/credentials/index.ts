// Credential sources: the server secret key, the sealed store, validation, resolution with a
// bounded cache, value templates and projections (see docs/ARCHITECTURE.md, Egress credentials).
export { SECRET_KEY_FILE, SecretKey, loadSecretKey, readOrCreatePrivateFile } from './key.js'
export {
  checkBinding,
  project,
  projectionServedBy,
  type PlaceholderLocation,
  type Projection,
  type ResolvedCredential,
} from './projections.js'
export { CredentialResolver, type ResolverOptions } from './resolve.js'
export { CredentialSourceService, type CredentialActor, type CredentialServiceOptions } from './service.js'
export { CREDENTIAL_SOURCE_NAME, checkWrite, fieldsOf, isResolverKind } from './spec.js'
export type { CredentialSourceInfo } from './store.js'
export {
  parseGoDurationMs,
  parseTemplate,
  renderTemplate,
  templateFields,
  type TemplatePart,
} from './template.js'
