// Where app services' public URLs point: S0_EXPOSURE_DOMAIN / S0_EXPOSURE_SCHEME, or by default
// `localhost:<the port this server listens on>` (browsers and curl send `*.localhost` to
// loopback, so a fresh install needs no DNS).
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Config } from '../core/config.js'
import type { Exposure } from '../sandboxes/index.js'

export function exposureOf(config: Config, server: Server): Exposure {
  if (config.exposureDomain) return { domain: config.exposureDomain, scheme: config.exposureScheme }
  const addr = server.address() as AddressInfo | null
  const port = addr?.port ?? config.port
  return { domain: `localhost:${port}`, scheme: config.exposureScheme }
}
