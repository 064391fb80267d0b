// The template cache the tests share (built once by test/global-templates.ts), and the rule for a
// missing prerequisite: under CI=true it fails the test; elsewhere it is skipped with a warning.

/**
 * Fixed by default so the Debian template (~1-2 min to build) is built once per machine, not per
 * run; `S0_TEST_TEMPLATE_DIR` points the suite (and the global setup) elsewhere.
 */
export const TEMPLATE_CACHE_DIR = process.env['S0_TEST_TEMPLATE_DIR'] ?? '/var/tmp/s0-test-templates'

/** Every built-in template some test uses: the global setup builds them before any test runs. */
export const SUITE_TEMPLATES = ['busybox', 'default'] as const

export function inCi(): boolean {
  const ci = process.env['CI']
  return ci !== undefined && ci !== '' && ci !== 'false' && ci !== '0'
}

/**
 * When `missing` is set: throws under CI (a missing prerequisite is a failure there), else warns
 * and returns true (the caller skips). Returns false when nothing is missing.
 */
export function missingPrerequisite(missing: string | undefined): boolean {
  if (missing === undefined) return false
  if (inCi()) throw new Error(`prerequisite missing (CI=true, so this fails instead of skipping): ${missing}`)
  console.warn(`skipping: ${missing}`)
  return true
}
