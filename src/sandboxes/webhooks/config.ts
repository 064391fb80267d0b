// A claim's `config.webhook {url, secret, watch_dir}`, checked: an http(s) URL (the server POSTs
// from the host network: docs/WEBHOOKS.md says what an operator should restrict), a secret, and
// an absolute sandbox directory to watch.
import { S0Error } from '../../core/errors.js'
import { limits } from '../../core/limits.js'

export interface WebhookConfig {
  url: string
  secret: string
  watch_dir?: string
}

function invalid(message: string, field: string): S0Error {
  return new S0Error('invalid_request', message, { details: { field: `config.webhook.${field}` } })
}

/** The webhook as stored, or undefined when the claim has none (or no url: nothing to call). */
export function checkWebhook(raw: Record<string, unknown> | undefined): WebhookConfig | undefined {
  if (raw === undefined) return undefined
  const { url, secret, watch_dir: watchDir } = raw
  if (url === undefined || url === '') {
    if (secret !== undefined || watchDir !== undefined)
      throw invalid('config.webhook.url is required when a webhook is configured', 'url')
    return undefined
  }
  if (typeof url !== 'string' || url.length > limits.webhookUrlCharsMax)
    throw invalid(`url must be a string of at most ${limits.webhookUrlCharsMax} characters`, 'url')
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw invalid(`url ${JSON.stringify(url)} is not a URL`, 'url')
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
    throw invalid(`url must be http or https (got ${parsed.protocol.replace(/:$/, '')})`, 'url')
  if (parsed.username || parsed.password) throw invalid('url must not carry credentials', 'url')
  if (secret !== undefined && (typeof secret !== 'string' || secret.length > limits.webhookSecretCharsMax))
    throw invalid(`secret must be a string of at most ${limits.webhookSecretCharsMax} characters`, 'secret')
  if (watchDir !== undefined && watchDir !== '') {
    if (
      typeof watchDir !== 'string' ||
      !watchDir.startsWith('/') ||
      watchDir.length > 4096 ||
      watchDir.includes('\0') ||
      watchDir.split('/').some((c) => c === '..' || c === '.')
    )
      throw invalid('watch_dir must be an absolute path without . or ..', 'watch_dir')
  }
  return {
    url: parsed.toString(),
    secret: typeof secret === 'string' ? secret : '',
    ...(typeof watchDir === 'string' && watchDir !== '' ? { watch_dir: watchDir } : {}),
  }
}
