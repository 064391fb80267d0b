// The two bits of Go syntax a credential binding carries: value templates (the subset
// `{{ .field }}`, with Go's `{{-` / `-}}` whitespace trimming) and cache TTLs as Go durations.
// Anything else a Go template can do (pipelines, functions, range, comments) is refused.
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'

export type TemplatePart = string | { field: string }

const FIELD = /^\.([A-Za-z_][A-Za-z0-9_]*)$/
const SPACE = /[ \t\r\n]/

function templateError(why: string): S0Error {
  return new S0Error('credential_template_invalid', `value template: ${why}`)
}

/** The template split into literal text and field references. */
export function parseTemplate(template: string): TemplatePart[] {
  if (template.length > limits.credentialTemplateCharsMax)
    throw templateError(`longer than ${limits.credentialTemplateCharsMax} characters`)
  const parts: TemplatePart[] = []
  let i = 0
  let trimNext = false
  const literal = (s: string): void => {
    const t = trimNext ? s.replace(/^[ \t\r\n]+/, '') : s
    trimNext = false
    if (t !== '') parts.push(t)
  }
  while (i < template.length) {
    const open = template.indexOf('{{', i)
    if (open < 0) {
      literal(template.slice(i))
      break
    }
    literal(template.slice(i, open))
    const close = template.indexOf('}}', open + 2)
    if (close < 0) throw templateError(`unclosed action at offset ${open}`)
    let inner = template.slice(open + 2, close)
    // Go: `{{- ` trims the white space before the action, ` -}}` the white space after it.
    if (inner.length >= 2 && inner[0] === '-' && SPACE.test(inner[1] as string)) {
      inner = inner.slice(1)
      const last = parts[parts.length - 1]
      if (typeof last === 'string') {
        const trimmed = last.replace(/[ \t\r\n]+$/, '')
        if (trimmed === '') parts.pop()
        else parts[parts.length - 1] = trimmed
      }
    }
    if (inner.length >= 2 && inner.endsWith('-') && SPACE.test(inner[inner.length - 2] as string)) {
      inner = inner.slice(0, -1)
      trimNext = true
    }
    const m = FIELD.exec(inner.trim())
    if (!m)
      throw templateError(
        `only {{ .field }} is supported (offset ${open}); pipelines, functions and other actions are not`,
      )
    parts.push({ field: m[1] as string })
    i = close + 2
  }
  return parts
}

/** The fields a template reads, in order of first use. */
export function templateFields(template: string): string[] {
  const out: string[] = []
  for (const p of parseTemplate(template))
    if (typeof p !== 'string' && !out.includes(p.field)) out.push(p.field)
  return out
}

/** `template` with each `{{ .field }}` replaced by `fields[field]`; an unknown field is an error. */
export function renderTemplate(template: string, fields: Readonly<Record<string, string>>): string {
  let out = ''
  for (const p of parseTemplate(template)) {
    if (typeof p === 'string') {
      out += p
      continue
    }
    if (!Object.hasOwn(fields, p.field))
      throw new S0Error(
        'credential_field_unknown',
        `value template reads .${p.field}, which the source does not have (it has: ${Object.keys(fields).join(', ') || 'none'})`,
        { details: { field: p.field } },
      )
    out += fields[p.field]
  }
  return out
}

const DURATION_UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
}

/**
 * A Go duration (`300ms`, `30s`, `1.5m`, `1h30m`, `0`) in milliseconds. Negative durations
 * and anything Go's time.ParseDuration would refuse are errors.
 */
export function parseGoDurationMs(text: string, field = 'cachePolicy.ttl'): number {
  const bad = (): S0Error =>
    new S0Error('invalid_request', `${field}: not a Go duration (e.g. 30s, 5m, 1h30m)`, {
      details: { field },
    })
  const s = text.trim()
  if (s === '0' || s === '+0') return 0
  if (s.startsWith('-') && s !== '-0') throw bad()
  const body = s.replace(/^[+-]/, '')
  const re = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/gy
  let ms = 0
  let at = 0
  let m: RegExpExecArray | null
  while ((m = re.exec(body)) !== null) {
    ms += Number(m[1]) * (DURATION_UNIT_MS[m[2] as string] as number)
    at = re.lastIndex
  }
  if (body === '' || at !== body.length || !Number.isFinite(ms)) throw bad()
  return ms
}
