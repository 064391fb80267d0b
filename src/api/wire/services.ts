// App services on the wire (snake_case, as stored): `{sandbox_id, services, exposure_domain}`.
import type { ServicesView } from '../../sandboxes/index.js'

export function servicesJson(v: ServicesView): Record<string, unknown> {
  return { sandbox_id: v.sandboxId, services: v.services, exposure_domain: v.exposureDomain }
}
