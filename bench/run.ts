/**
 * The benchmark runner (`npm run bench [-- name...]`): loads every bench/<name>.ts module and runs
 * it. A module either default-exports a `Bench` — the runner then prints one line per measurement
 * with luo's time, the baseline's time from the same run and the ratio luo/baseline — or exports a
 * `run...Bench()` function that prints its own report.
 */
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** One measurement: the same work done by luo and by the baseline, in nanoseconds per operation. */
export interface BenchResult {
  readonly what: string;
  readonly luoNs: number;
  readonly baselineNs: number;
}

export interface Bench {
  /** Name of the baseline the ratios are against (e.g. "libfdt"). */
  readonly baseline: string;
  run(): Promise<BenchResult[]> | BenchResult[];
}

type BenchModule = { default?: Bench } & Record<string, unknown>;

const here = dirname(fileURLToPath(import.meta.url));

function fmt(ns: number): string {
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)} ms`;
  if (ns >= 1e3) return `${(ns / 1e3).toFixed(2)} us`;
  return `${ns.toFixed(0)} ns`;
}

async function runModule(name: string, mod: BenchModule): Promise<void> {
  const bench = mod.default;
  if (bench && typeof bench.run === 'function') {
    for (const r of await bench.run()) {
      const ratio = r.luoNs / r.baselineNs;
      console.log(`${name}: ${r.what.padEnd(58)} luo ${fmt(r.luoNs).padStart(10)}   ${bench.baseline} ${fmt(r.baselineNs).padStart(10)}   luo/${bench.baseline} ${ratio.toFixed(2)}x`);
    }
    return;
  }
  const entry = Object.entries(mod).find(([k, v]) => /^run\w*Bench$/.test(k) && typeof v === 'function');
  if (!entry) throw new Error(`bench/${name}.ts exports neither a default Bench nor a run...Bench() function`);
  await (entry[1] as () => unknown)();
}

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  const names = readdirSync(here)
    .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
    .map((f) => f.slice(0, -3))
    .filter((n) => only.length === 0 || only.includes(n))
    .sort();
  if (names.length === 0) throw new Error(`no bench module matches ${only.join(', ')}`);
  for (const name of names) {
    const mod = (await import(pathToFileURL(join(here, `${name}.ts`)).href)) as BenchModule;
    await runModule(name, mod);
  }
}

await main();
