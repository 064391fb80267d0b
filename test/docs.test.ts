// The generated docs match the code they describe (run `npm run docs` to refresh them).
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { errorsDoc, withConfigTable } from '../tools/gen-docs.js'
import { withSdkCoverage } from '../tools/sdk-coverage.js'

const ROOT = path.resolve(import.meta.dirname, '..')

describe('docs', () => {
  it('docs/ERRORS.md lists exactly the error catalogue', async () => {
    expect(await readFile(path.join(ROOT, 'docs', 'ERRORS.md'), 'utf8')).toBe(errorsDoc())
  })

  it('the README configuration table lists every setting', async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8')
    expect(readme).toBe(withConfigTable(readme))
  })

  it("the README's SDK coverage table matches the SDK and the tests", async () => {
    const readme = await readFile(path.join(ROOT, 'README.md'), 'utf8')
    expect(readme).toBe(withSdkCoverage(readme))
  })
})
