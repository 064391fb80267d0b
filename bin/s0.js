#!/usr/bin/env node
// Entry point of the `s0` command: the compiled CLI lives in dist/ (built by `npm run build`).

// FUSE requests can hold libuv pool threads (a process reading a file on a mount this server
// serves, through the files API) while their handlers need the pool too (fs, DNS): the
// default of 4 threads is too few to rule that out. Set before anything uses the pool.
process.env.UV_THREADPOOL_SIZE ??= '64'
const { main } = await import('../dist/cli/main.js')

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
    process.exit(1)
  },
)
