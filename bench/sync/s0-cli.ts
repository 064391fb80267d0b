// `s0` from this checkout's source (through tsx) for the sync suite, as bin/s0.js runs the
// compiled CLI: the same libuv pool size, set before anything uses the pool.
process.env['UV_THREADPOOL_SIZE'] ??= '64'
const { main } = await import('../../src/cli/main.js')

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(err instanceof Error ? (err.stack ?? err.message) : String(err))
    process.exit(1)
  },
)
