// Builds every template the suite uses (busybox, and the Debian `default`: ~1-2 min with
// mmdebstrap) once, before any test file runs, so no test's timeout includes a build. A template
// that cannot be built fails the run under CI=true; elsewhere the tests that need it say so.
import { limits } from '../src/core/limits.js'
import { TemplateStore, mirrorReachable } from '../src/runtime/templates.js'
import { inCi, SUITE_TEMPLATES, TEMPLATE_CACHE_DIR } from './runtime/template-cache.js'

/** One limit for all builds here: the Debian build's own, plus the rest. */
const BUILD_TIME_LIMIT_MS = limits.templateDebianBuildTimeoutMs + 5 * 60_000

export default async function setup(): Promise<void> {
  const store = new TemplateStore({ dir: TEMPLATE_CACHE_DIR })
  for (const name of SUITE_TEMPLATES) {
    if (await store.isReady(name)) continue
    if (name === 'default' && !(await mirrorReachable(store.mirror))) {
      const why = `template ${name} is not in ${TEMPLATE_CACHE_DIR} and ${store.mirror} does not answer`
      if (inCi()) throw new Error(`global setup: ${why}; CI needs it (build it where the mirror answers)`)
      console.warn(`global setup: ${why}; the tests that need it will skip`)
      continue
    }
    const started = Date.now()
    process.stderr.write(`global setup: building template ${name} in ${TEMPLATE_CACHE_DIR}...\n`)
    let timer: NodeJS.Timeout | undefined
    const overdue = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new Error(
              `global setup: building template ${name} took over ${BUILD_TIME_LIMIT_MS / 60_000} min`,
            ),
          ),
        BUILD_TIME_LIMIT_MS,
      )
    })
    try {
      await Promise.race([store.ensure(name), overdue])
    } catch (err) {
      throw new Error(`global setup: building template ${name} failed: ${(err as Error).message}`, {
        cause: err,
      })
    } finally {
      clearTimeout(timer)
    }
    process.stderr.write(
      `global setup: template ${name} built in ${Math.round((Date.now() - started) / 1000)} s\n`,
    )
  }
}
