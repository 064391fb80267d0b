// `s0 events`: offline checks of exported sandbox events. `verify` re-hashes each event's wire
// document and checks its Ed25519 signature against the server's public key (given, or derived
// from the state directory's signing key); `public-key` prints that key for whoever verifies.
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { loadConfig } from '../core/config.js'
import { EVENT_SIGNING_KEY_FILE, EventSigner, EventVerifier, type Integrity } from '../core/event-signing.js'

const USAGE = `usage:
  s0 events public-key                       the server's event-signing public key (base64) and its id
  s0 events verify FILE [--public-key KEY]   check every event of FILE (one JSON per line, as
                                             \`s0 sandbox events <id> --all --json\` writes; - for stdin)
KEY is the base64 public key \`s0 events public-key\` printed; without it, the key of the server whose
state directory is S0_STATE_DIR. Exit status 0 when every event verifies, 1 otherwise.
`

export async function run(args: string[]): Promise<number> {
  try {
    return await runEvents(args)
  } catch (err) {
    if (!(err instanceof KeyMissing)) throw err
    process.stderr.write(`s0 events: ${err.message}\n`)
    return 1
  }
}

class KeyMissing extends Error {}

async function runEvents(args: string[]): Promise<number> {
  const [name, ...rest] = args
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(USAGE)
    return name ? 0 : 2
  }
  let parsed
  try {
    parsed = parseArgs({ args: rest, options: { 'public-key': { type: 'string' } }, allowPositionals: true })
  } catch (err) {
    process.stderr.write(`s0 events: ${(err as Error).message}\n\n${USAGE}`)
    return 2
  }
  if (name === 'public-key') {
    const signer = await serverSigner()
    process.stdout.write(`${signer.verifier.publicKey.toString('base64')}  ${signer.keyId}\n`)
    return 0
  }
  if (name !== 'verify' || parsed.positionals.length !== 1) {
    process.stderr.write(
      `s0 events: ${name === 'verify' ? 'verify takes one FILE' : `unknown subcommand ${JSON.stringify(name)}`}\n\n${USAGE}`,
    )
    return 2
  }
  const keyText = parsed.values['public-key']
  const verifier = keyText
    ? new EventVerifier(Buffer.from(keyText, 'base64'))
    : (await serverSigner()).verifier
  const file = parsed.positionals[0] as string
  const text = file === '-' ? await readStdin() : await readFile(file, 'utf8')
  const counts = { verified: 0, invalid: 0, unavailable: 0 }
  let lineNo = 0
  for (const line of text.split('\n')) {
    lineNo++
    if (line.trim() === '') continue
    let e: Record<string, unknown>
    try {
      e = JSON.parse(line) as Record<string, unknown>
    } catch {
      process.stderr.write(`s0 events: line ${lineNo} is not JSON\n`)
      return 1
    }
    const { integrity, ...doc } = e as { integrity?: Integrity & { signature_status?: string } }
    // The status the server added when it served the event is not part of what was signed.
    const status = integrity ? verifier.check(doc, stripStatus(integrity)) : 'unavailable'
    counts[status]++
    if (status !== 'verified')
      process.stdout.write(
        `${status}: ${String((doc as Record<string, unknown>)['event_id'] ?? `line ${lineNo}`)}\n`,
      )
  }
  process.stdout.write(
    `${counts.verified} verified, ${counts.invalid} invalid, ${counts.unavailable} unavailable (key ${verifier.id})\n`,
  )
  return counts.invalid === 0 && counts.unavailable === 0 && counts.verified > 0 ? 0 : 1
}

function stripStatus(i: Integrity & { signature_status?: string }): Integrity {
  const { signature_status: _, ...rest } = i
  return rest
}

/** The state directory's key, never created here (a missing one is the caller's mistake). */
async function serverSigner(): Promise<EventSigner> {
  const dir = loadConfig().stateDir
  const seed = await readFile(path.join(dir, EVENT_SIGNING_KEY_FILE)).catch(() => undefined)
  if (!seed) throw new KeyMissing(`no event-signing key in ${dir} (set S0_STATE_DIR, or pass --public-key)`)
  return EventSigner.fromSeed(seed)
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
