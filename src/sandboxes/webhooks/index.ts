// Webhooks of the sandbox domain: the claim's config checked, the deliverer (outbox cursor over
// sandbox_events), and the watch_dir watches that turn file changes into events.
export { checkWebhook, type WebhookConfig } from './config.js'
export { WebhookDeliverer, type WebhookDelivererOptions } from './deliverer.js'
export { WebhookWatches, type WatchTarget } from './watch.js'
export { SIGNATURE_HEADER, sign, webhookBody } from './payload.js'
