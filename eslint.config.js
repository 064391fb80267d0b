// Lint: typescript-eslint's recommended rules plus the layering rule (imports point down).
import { readFileSync } from 'node:fs'
import js from '@eslint/js'
import tseslint from 'typescript-eslint'

// core <- blockstore <- snapshots <- fuse / runtime / egress / sync <- accounts / sandboxes <- api <- cli
// (docs/ARCHITECTURE.md; test/layers.test.ts checks the same, and that no folder holds a cycle)
// The ranks live in tools/layers.json, read by test/layers.test.ts too.
const RANK = JSON.parse(readFileSync(new URL('./tools/layers.json', import.meta.url), 'utf8'))
const LAYERS = Object.keys(RANK)

const layerRules = LAYERS.map((layer) => ({
  files: [`src/${layer}/**/*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: LAYERS.filter((other) => other !== layer && RANK[other] >= RANK[layer]).map((other) => ({
          group: [`**/${other}/*`, `../${other}/*`],
          message: `src/${layer} may not import src/${other}: layers import downward only (core <- blockstore <- snapshots <- fuse/runtime/egress/sync <- accounts/sandboxes <- api <- cli).`,
        })),
      },
    ],
  },
}))

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**', 'bench/work/**', '.s0/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: { process: 'readonly', console: 'readonly', Buffer: 'readonly', URL: 'readonly' },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
    },
  },
  {
    // A promise nobody awaits loses its error: every one is awaited, returned, or marked `void`
    // with a comment saying why fire-and-forget is right there.
    files: ['**/*.ts'],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: { '@typescript-eslint/no-floating-promises': 'error' },
  },
  {
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { require: 'readonly', module: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  ...layerRules,
)
