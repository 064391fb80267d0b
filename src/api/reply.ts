// The Sandbox0 envelope: `{success: true, data}` and `{success: false, error: {code, message,
// details?}}`, and the mapping of anything thrown during a request onto it.
import { S0Error, isS0Error, type ErrorCode } from '../core/errors.js'
import { limits } from '../core/limits.js'

export const JSON_TYPE = 'application/json; charset=utf-8'

export interface ErrorBody {
  success: false
  error: { code: string; message: string; details?: unknown }
}

export function ok<T>(data: T): { success: true; data: T } {
  return { success: true, data }
}

export function errorBody(code: ErrorCode, message: string, details?: unknown): ErrorBody {
  return { success: false, error: details === undefined ? { code, message } : { code, message, details } }
}

/** Maps an expected failure (anything but a bug) onto a catalogue status and the error envelope. */
export function toErrorResponse(err: unknown): { status: number; body: ErrorBody } {
  if (isS0Error(err)) return { status: err.status, body: errorBody(err.code, err.message, err.details) }
  const fe = err as { validation?: unknown; statusCode?: unknown; code?: unknown; message?: unknown }
  const message = typeof fe.message === 'string' ? fe.message : 'request failed'
  if (fe.validation !== undefined)
    return { status: 400, body: errorBody('bad_request', message, fe.validation) }
  const status = typeof fe.statusCode === 'number' ? fe.statusCode : 500
  // fastify's own client errors (body too large, bad JSON, bad content type) carry a 4xx status.
  if (status === 413)
    return {
      status,
      body: errorBody('payload_too_large', `request body exceeds ${limits.requestBodyBytesMax} bytes`),
    }
  if (status === 404) return { status, body: errorBody('not_found', message) }
  if (status >= 400 && status < 500) return { status: 400, body: errorBody('bad_request', message) }
  // Anything else is an unexpected failure: its message may leak internals.
  return { status: 500, body: errorBody('internal_error', 'internal error; see the server log') }
}

/** The `unauthorized` error of a route reached without the auth hook's answer. */
export function unauthorized(): S0Error {
  return new S0Error('unauthorized', 'authentication required')
}
