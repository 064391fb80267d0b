// Runs the s0 CLI from source (tests spawn it as a real process: `node --import tsx s0-main.ts server`).
import { main } from '../../src/cli/main.js'

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err)
    process.exit(1)
  },
)
