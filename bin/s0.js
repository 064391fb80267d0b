#!/usr/bin/env node
// Entry point of the `s0` command: the compiled CLI lives in dist/ (built by `npm run build`).
import { main } from '../dist/cli/main.js'

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
    process.exit(1)
  },
)
