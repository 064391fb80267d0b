// Templates in the SDK's wire shape: top level snake_case, `spec` as stored (camelCase).
import type { TemplateRow } from '../../sandboxes/index.js'

export function templateJson(t: TemplateRow): Record<string, unknown> {
  return {
    template_id: t.id,
    scope: t.teamId === '' ? 'public' : 'team',
    ...(t.teamId === '' ? {} : { team_id: t.teamId }),
    spec: t.spec,
    created_at: t.createdAt.toISOString(),
    updated_at: t.updatedAt.toISOString(),
  }
}
