// fast-check parameters for the egress tests: fast-check prints the seed and path of a failure;
// S0_PBT_SEED and S0_PBT_PATH replay it, S0_PBT_RUNS makes runs longer.
export function pbt(runs: number): { numRuns: number; seed?: number; path?: string } {
  const env = process.env
  return {
    numRuns: Number(env['S0_PBT_RUNS'] ?? runs),
    ...(env['S0_PBT_SEED'] ? { seed: Number(env['S0_PBT_SEED']) } : {}),
    ...(env['S0_PBT_PATH'] ? { path: env['S0_PBT_PATH'] } : {}),
  }
}
