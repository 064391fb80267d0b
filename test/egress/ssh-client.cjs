// An SSH client run INSIDE a sandbox by the egress end-to-end tests (node with the ssh2 package
// copied in): logs in with the sandbox's own key, runs one command, prints one JSON line.
// Usage: node ssh-client.cjs <host> <port> <user> <private key file> <command>
const fs = require('fs')
const { Client } = require('ssh2')

const [host, port, username, keyFile, command] = process.argv.slice(2)
const c = new Client()
let hostKey = ''
c.on('ready', () => {
  c.exec(command, (err, stream) => {
    if (err) return done({ error: err.message })
    let stdout = ''
    stream.on('data', (b) => (stdout += b))
    stream.on('close', (code) => done({ stdout, code, hostKey }))
  })
})
c.on('error', (err) => done({ error: err.message }))
c.connect({
  host,
  port: Number(port),
  username,
  privateKey: fs.readFileSync(keyFile),
  readyTimeout: 10000,
  hostVerifier: (key) => {
    hostKey = key.toString('base64')
    return true // the proxy's host key: what a sandbox's ssh would pin
  },
})

function done(result) {
  console.log(JSON.stringify(result))
  c.end()
  process.exit(0)
}
