// Plain-text output helpers shared by CLI commands.

/** Left-aligned columns separated by two spaces, header first. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd()
  return [line(header), ...rows.map(line)].join('\n') + '\n'
}

/** An ISO-8601 time without milliseconds. */
export function isoSeconds(time: Date | string): string {
  return (typeof time === 'string' ? time : time.toISOString()).replace(/\.\d{3}Z$/, 'Z')
}
