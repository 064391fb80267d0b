// App services of sandboxes: the stored list (in the sandbox's config), its replacement, the
// view with publishability (`publishable`, `publish_blockers`, `public_url`), and what the
// ingress proxy needs to find a service's sandbox, wake it and reach it.
import { S0Error } from '../../core/errors.js'
import { isSandboxId, type SandboxId, type TeamId } from '../../core/ids.js'
import type { SandboxRow } from '../rows.js'
import { checkServices, type AppService } from './model.js'
import { probeHealth, probePort } from './probe.js'
import type { ServiceSupervisor } from './supervisor.js'

export * from './model.js'
export { ServiceSupervisor, type ProcessState } from './supervisor.js'

/** Where public URLs point: `<scheme>://<service>--<sandbox>.<domain>`. */
export interface Exposure {
  domain: string
  scheme: string
}

export interface ServiceView extends AppService {
  publishable: boolean
  publish_blockers?: string[]
  public_url?: string
}

export interface ServicesView {
  sandboxId: SandboxId
  services: ServiceView[]
  exposureDomain: string
}

/** What the services need of the sandbox service (passed in: no import cycle). */
export interface AppServicesDeps {
  /** A sandbox of the team the API shows; `not_found` otherwise. */
  get(teamId: TeamId, id: string): Promise<SandboxRow>
  /** Any team's sandbox by id, for the ingress (cached while it runs); undefined if none. */
  lookup(id: SandboxId): Promise<SandboxRow | undefined>
  /** A running sandbox, woken if paused and auto_resume allows (503 `unavailable` while it wakes). */
  running(teamId: TeamId, id: string): Promise<SandboxRow>
  /** Whether the sandbox's processes run on this host now. */
  live(id: SandboxId): boolean
  /** The sandbox's address on its veth; undefined without the sandbox network. */
  address(id: SandboxId): string | undefined
  /** Stores the list in the sandbox's config. */
  store(row: SandboxRow, services: AppService[]): Promise<SandboxRow>
  supervisor: ServiceSupervisor
}

export class AppServices {
  constructor(readonly deps: AppServicesDeps) {}

  async list(teamId: TeamId, id: string, exposure: Exposure): Promise<ServicesView> {
    return this.viewOf(await this.deps.get(teamId, id), exposure)
  }

  /** Replaces the sandbox's services; supervised ones start, stop or restart now if it runs. */
  async update(teamId: TeamId, id: string, list: AppService[], exposure: Exposure): Promise<ServicesView> {
    const checked = checkServices(list)
    const row = await this.deps.get(teamId, id)
    if (row.status === 'failed' || row.status === 'terminating')
      throw new S0Error('conflict', `sandbox ${row.id} is ${row.status}`)
    const updated = await this.deps.store(row, checked)
    if (updated.status === 'running' && this.deps.live(updated.id))
      await this.deps.supervisor.apply(updated.id, checked, updated.config.env_vars ?? {})
    return this.viewOf(updated, exposure)
  }

  /** A sandbox's stored services (checked when stored). */
  servicesOf(row: SandboxRow): AppService[] {
    return (row.config.services ?? []) as AppService[]
  }

  publicUrl(exposure: Exposure, serviceId: string, sandboxId: string): string {
    return `${exposure.scheme}://${serviceId}--${sandboxId}.${exposure.domain}`
  }

  async viewOf(row: SandboxRow, exposure: Exposure): Promise<ServicesView> {
    const services = await Promise.all(this.servicesOf(row).map((s) => this.viewOne(row, s, exposure)))
    return { sandboxId: row.id, services, exposureDomain: exposure.domain }
  }

  private async viewOne(row: SandboxRow, s: AppService, exposure: Exposure): Promise<ServiceView> {
    const blockers = await this.blockers(row, s)
    return {
      ...s,
      publishable: blockers.length === 0,
      ...(blockers.length > 0 ? { publish_blockers: blockers } : {}),
      ...(s.ingress.public ? { public_url: this.publicUrl(exposure, s.id, row.id) } : {}),
    }
  }

  /** Why a request to the service's public URL would not reach it now (empty: it would). */
  private async blockers(row: SandboxRow, s: AppService): Promise<string[]> {
    const out: string[] = []
    if (!s.ingress.public) out.push('ingress.public is false: the service has no public URL')
    const routes = s.ingress.routes ?? []
    if (row.status === 'paused') {
      if (row.config.auto_resume === false)
        out.push('sandbox is paused and auto_resume is off: requests cannot wake it')
      for (const r of routes.filter((x) => !x.resume))
        out.push(`sandbox is paused and route ${r.id} has no resume: its requests get 503`)
      return out
    }
    if (row.status !== 'running' || !this.deps.live(row.id)) {
      out.push(`sandbox is ${row.status}${row.statusReason ? `: ${row.statusReason}` : ''}`)
      return out
    }
    const address = this.deps.address(row.id)
    if (address === undefined) {
      out.push(
        'the server runs sandboxes without a network (S0_SANDBOX_NETWORK=false): nothing can reach the port',
      )
      return out
    }
    const port = s.port as number
    const refused = await probePort(address, port)
    if (refused !== undefined) {
      const type = s.runtime?.type ?? 'manual'
      const proc = this.deps.supervisor.status(row.id, s.id)
      let why = `nothing listens on port ${port} (${refused})`
      if (type === 'manual' && row.runtimeGeneration > 1)
        why += '; a manual service is yours to start again after a resume, fork or restore'
      if (proc && proc.state !== 'running') {
        const last = proc.tail.trim().split('\n').at(-1) ?? ''
        const code = proc.lastExitCode === null ? '' : ` with code ${proc.lastExitCode}`
        const next = proc.restartAt
          ? `, restarting in ${Math.max(0, Math.ceil((proc.restartAt - Date.now()) / 1000))} s`
          : ''
        why += `; its ${type} process exited${code}${next}${proc.error ? `: ${proc.error}` : last ? `: ${last}` : ''}`
      } else if (proc) why += `; its ${type} process is running (starting?)`
      out.push(why)
      return out
    }
    const path = s.health_check?.path
    if (path !== undefined) {
      const h = await probeHealth(address, port, path)
      if ('error' in h) out.push(`health check ${path} failed: ${h.error}`)
      else if (h.status >= 400) out.push(`health check ${path} answered ${h.status}`)
    }
    return out
  }
}

/** `<service>--<sandbox>` from the first label of a public host name; undefined otherwise. */
export function parseServiceLabel(label: string): { serviceId: string; sandboxId: SandboxId } | undefined {
  const at = label.indexOf('--')
  if (at <= 0) return undefined
  const serviceId = label.slice(0, at)
  const sandboxId = label.slice(at + 2)
  if (!isSandboxId(sandboxId)) return undefined
  return { serviceId, sandboxId }
}
