// Runs s3rver (a real S3 server over HTTP) for tests and benches: node --openssl-legacy-provider
// tools/s3rver-main.cjs <dir> <bucket> [port] [address]. Prints {"port":N} on stdout once listening.
// The legacy provider is needed: s3rver encrypts list continuation tokens with DES.
'use strict'
const S3rver = require('s3rver')

const [dir, bucket, port, address] = process.argv.slice(2)
const server = new S3rver({
  address: address || '127.0.0.1',
  port: Number(port ?? 0),
  directory: dir,
  silent: true,
  configureBuckets: [{ name: bucket ?? 's0' }],
})
server.run().then(
  (addr) => process.stdout.write(JSON.stringify({ port: addr.port }) + '\n'),
  (err) => {
    console.error(err)
    process.exit(1)
  },
)
// Exits even if closing fails: whoever sent SIGTERM waits only for the exit.
process.on('SIGTERM', () => void server.close().finally(() => process.exit(0)))
