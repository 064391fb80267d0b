// `s0 template ls | get | create | rm | from-sandbox`: a team's templates over the API. A template
// from a registry image or captured from a sandbox is built in the background; `--wait` polls it
// (a progress line on a terminal) until it is ready or has failed.
import { setTimeout as sleep } from 'node:timers/promises'
import { limits } from '../core/limits.js'
import { ApiError, type ApiClient } from './api-client.js'
import { print, runApiCommand, UsageError, type Parsed, type Sub } from './api-command.js'
import { readLocalText } from './file-transfer.js'
import { isoSeconds, table } from './format.js'
import { Progress } from './progress.js'

const USAGE = `usage:
  s0 template ls                                      the built-in and the team's templates
  s0 template get <id>                                a template and its spec (JSON)
  s0 template create <id> --file SPEC.json|- [--wait]
  s0 template create <id> --image REF [--memory 512Mi] [--cpu N] [--wait]
  s0 template rm <id>
  s0 template from-sandbox <sandbox-id> <template-id> [--wait]   capture a sandbox as a template
A spec file is the SDK's TemplateSpec as JSON (mainContainer, envVars, network, pool...). --wait
waits for a template built in the background (registry image, captured sandbox) to be ready
(at most --timeout SECONDS, default ${limits.cliTemplateWaitDefaultMs / 1000}). Every command takes --json.
The server is S0_API_URL with S0_TOKEN, or the state directory's token file.
`

interface TemplateJson {
  template_id: string
  scope: 'public' | 'team'
  spec: { displayName?: string; description?: string; mainContainer?: { image?: string } }
  status?: { creation?: { state: string; stage?: string; reason?: string; message?: string } }
  created_at: string
}

const tpl = (id: string): string => `/api/v1/templates/${encodeURIComponent(id)}`

function state(t: TemplateJson): string {
  return t.status?.creation?.state ?? 'ready'
}

const SUBS: Record<string, Sub> = {
  ls: {
    arity: [0, 0],
    action: async (api, p) => {
      const { templates } = await api.json<{ templates: TemplateJson[] }>('GET', '/api/v1/templates')
      print(p, templates, () =>
        table(
          ['ID', 'SCOPE', 'STATE', 'IMAGE', 'CREATED'],
          templates.map((t) => [
            t.template_id,
            t.scope,
            state(t),
            t.spec.mainContainer?.image ?? '',
            isoSeconds(t.created_at),
          ]),
        ),
      )
    },
  },
  get: {
    arity: [1, 1],
    action: async (api, p) => {
      const t = await api.json<TemplateJson>('GET', tpl(p.pos[0] as string))
      // The spec is JSON, and what `create --file` takes back: printed as JSON either way.
      print({ ...p, json: true }, t, () => '')
    },
  },
  create: {
    arity: [1, 1],
    strings: ['file', 'image', 'memory', 'cpu', 'timeout'],
    booleans: ['wait'],
    action: async (api, p) => {
      const file = p.str('file')
      const image = p.str('image')
      if ((file === undefined) === (image === undefined))
        throw new UsageError('create needs one of --file SPEC.json or --image REF')
      if (file !== undefined && (p.str('memory') !== undefined || p.str('cpu') !== undefined))
        throw new UsageError('--memory and --cpu go with --image (a spec file carries its own resources)')
      let spec: unknown
      if (file !== undefined) {
        const text = await readLocalText(file)
        try {
          spec = JSON.parse(text)
        } catch (err) {
          throw new ApiError('invalid_json', `${file === '-' ? 'stdin' : file}: ${(err as Error).message}`)
        }
      } else {
        const cpu = p.str('cpu')
        spec = {
          mainContainer: {
            image,
            resources: { memory: p.str('memory') ?? '512Mi', ...(cpu !== undefined ? { cpu } : {}) },
          },
        }
      }
      const timeoutMs = timeoutOf(p)
      let t = await api.json<TemplateJson>('POST', '/api/v1/templates', {
        json: { template_id: p.pos[0], spec },
      })
      if (p.bool('wait')) t = await waitReady(api, t, timeoutMs)
      print(p, t, () => `${t.template_id}\n`)
    },
  },
  rm: {
    arity: [1, 1],
    action: async (api, p) => {
      const r = await api.json<{ message: string }>('DELETE', tpl(p.pos[0] as string))
      print(p, r, () => '')
    },
  },
  'from-sandbox': {
    arity: [2, 2],
    strings: ['timeout'],
    booleans: ['wait'],
    action: async (api, p) => {
      const [sandboxId, templateId] = p.pos as [string, string]
      const timeoutMs = timeoutOf(p)
      let t = await api.json<TemplateJson>('POST', '/api/v1/templates/from-sandbox', {
        json: { template_id: templateId, sandbox_id: sandboxId },
      })
      if (p.bool('wait')) t = await waitReady(api, t, timeoutMs)
      print(p, t, () => `${t.template_id}${p.bool('wait') ? '' : ` (${state(t)})`}\n`)
    },
  },
}
SUBS['list'] = SUBS['ls'] as Sub

function timeoutOf(p: Parsed): number {
  const text = p.str('timeout')
  if (text === undefined) return limits.cliTemplateWaitDefaultMs
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new UsageError('--timeout must be a positive integer (seconds)')
  return n * 1000
}

/** Polls until the template is ready (returned) or failed (an error); bounded by `timeoutMs`. */
async function waitReady(api: ApiClient, first: TemplateJson, timeoutMs: number): Promise<TemplateJson> {
  const started = Date.now()
  const progress = new Progress(`creating template ${first.template_id}`)
  let t = first
  try {
    while (state(t) === 'creating') {
      const elapsed = Date.now() - started
      if (elapsed > timeoutMs)
        throw new ApiError(
          'timeout',
          `template ${t.template_id} is still creating after ${Math.round(timeoutMs / 1000)} s`,
        )
      progress.update(`${t.status?.creation?.stage ?? 'creating'} (${Math.round(elapsed / 1000)} s)`)
      await sleep(limits.cliTemplatePollMs)
      t = await api.json<TemplateJson>('GET', tpl(t.template_id))
    }
  } finally {
    progress.done()
  }
  const c = t.status?.creation
  if (c && c.state !== 'ready')
    throw new ApiError(
      'template_creation_failed',
      `template ${t.template_id} ${c.state}: ${c.message ?? c.reason ?? 'no reason given'}`,
    )
  return t
}

export function run(args: string[]): Promise<number> {
  return runApiCommand('template', USAGE, SUBS, args)
}
