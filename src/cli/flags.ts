// A small, strict flag parser: unknown flags are usage errors, not silently ignored.
import { S0Error } from '../core/errors.js'

export interface Flags {
  _: string[]
  [name: string]: string | boolean | string[] | undefined
}

export function parseFlags(args: string[], spec: { boolean: string[]; string: string[] }): Flags {
  const out: Flags = { _: [] }
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string
    if (!a.startsWith('--')) {
      out._.push(a)
      continue
    }
    const [name, inline] = a.slice(2).split('=', 2) as [string, string | undefined]
    if (spec.boolean.includes(name)) out[name] = true
    else if (spec.string.includes(name)) {
      const value = inline ?? args[++i]
      if (value === undefined) throw new S0Error('bad_request', `--${name} needs a value`)
      out[name] = value
    } else throw new S0Error('bad_request', `unknown flag --${name}`)
  }
  return out
}
