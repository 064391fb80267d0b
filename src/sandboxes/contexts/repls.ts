// The REPLs a context can run: each is started with its prompts silenced and unbuffered output,
// and knows the statement that prints a sentinel token on stdout and on stderr in its language.
export interface ReplSpec {
  argv: string[]
  env: Record<string, string>
  /** Lines that print `token` + newline on stdout, then on stderr. */
  sentinel(token: string): string
}

/** Built-in REPL aliases: prompts off, unbuffered output, a sentinel statement in the language. */
export const REPLS: Record<string, ReplSpec> = {
  python: {
    argv: ['python3', '-q', '-i', '-u', '-c', "import sys; sys.ps1 = ''; sys.ps2 = ''"],
    env: { PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' },
    // The blank line first closes any open block.
    sentinel: (t) => `\nprint('${t}'); print('${t}', file=__import__('sys').stderr)\n`,
  },
  bash: {
    // -i keeps the shell alive after a syntax error; --noediting and empty prompts keep it quiet.
    argv: ['bash', '--norc', '--noprofile', '--noediting', '-i'],
    env: { PS1: '', PS2: '', PROMPT_COMMAND: '' },
    sentinel: (t) => `\nprintf '%s\\n' ${t}; printf '%s\\n' ${t} >&2\n`,
  },
  node: {
    argv: [
      'node',
      '-e',
      "require('repl').start({ prompt: '', terminal: false, ignoreUndefined: true, useGlobal: true })",
    ],
    env: { NODE_DISABLE_COLORS: '1' },
    sentinel: (t) => `\nconsole.log('${t}'); console.error('${t}')\n`,
  },
}
REPLS['python3'] = REPLS['python'] as ReplSpec
REPLS['sh'] = REPLS['bash'] as ReplSpec
REPLS['nodejs'] = REPLS['node'] as ReplSpec

/** The names a REPL context may be asked for. */
export const REPL_ALIASES: readonly string[] = Object.keys(REPLS)
