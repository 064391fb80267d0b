// Helpers for tests that drive the official SDK.
import { APIError } from 'sandbox0'
import { expect } from 'vitest'

/** The APIError a call must fail with (the test fails if it succeeds or fails otherwise). */
export async function sdkError(p: Promise<unknown>): Promise<APIError> {
  const err = await p.then(
    () => new Error('expected the call to fail'),
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(APIError)
  return err as APIError
}
