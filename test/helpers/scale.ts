/**
 * How big the long tests run: quick in `npm test` (complete, but every long test at a size that
 * keeps the suite well under five minutes on a loaded 2-core machine), full size in
 * `npm run test:stress` (LUO_STRESS=1: the load test's 64 processes for 30 s, 50 kill trials,
 * thousands of fuzz cases). A test's own environment variable overrides both.
 */
export const STRESS = !!process.env['LUO_STRESS'];

/** `quick` in npm test, `stress` with LUO_STRESS, or the number in `env` when set. */
export function scaled(quick: number, stress: number, env?: string): number {
  const v = env ? process.env[env] : undefined;
  return v !== undefined && v !== '' ? Number(v) : STRESS ? stress : quick;
}

/** A progress line on stderr (the test runner shows it as it comes: no minutes of silence). */
export function progress(msg: string): void {
  process.stderr.write(`# ${msg}\n`);
}
