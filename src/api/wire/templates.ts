// Templates in the SDK's wire shape: top level snake_case, `spec` as stored (camelCase), and
// `status.creation` (camelCase) for a template built in the background.
import type { RegistryCredentialInfo, TemplateRow } from '../../sandboxes/index.js'

export function templateJson(t: TemplateRow): Record<string, unknown> {
  const c = t.creation
  return {
    template_id: t.id,
    scope: t.teamId === '' ? 'public' : 'team',
    ...(t.teamId === '' ? {} : { team_id: t.teamId }),
    spec: t.spec,
    ...(c
      ? {
          status: {
            creation: {
              state: c.state,
              stage: c.stage,
              startedAt: c.startedAt,
              ...(c.capturedAt ? { capturedAt: c.capturedAt } : {}),
              ...(c.completedAt ? { completedAt: c.completedAt } : {}),
              ...(c.outputImage ? { outputImage: c.outputImage } : {}),
              ...(c.reason ? { reason: c.reason } : {}),
              ...(c.message ? { message: c.message } : {}),
            },
          },
        }
      : {}),
    created_at: t.createdAt.toISOString(),
    updated_at: t.updatedAt.toISOString(),
  }
}

/** A stored registry credential: never its password. */
export function registryCredentialJson(c: RegistryCredentialInfo): Record<string, unknown> {
  return {
    registry: c.registry,
    username: c.username,
    created_at: c.createdAt.toISOString(),
    updated_at: c.updatedAt.toISOString(),
  }
}
