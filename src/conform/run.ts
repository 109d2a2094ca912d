/**
 * `luo conform run`: for each seed, the generated program on the real kernel (QEMU) and on luo
 * (luo serve + the shim), both sides at once, N seeds at a time; then every seed compared and the
 * divergences grouped. The report is plain data; src/cli/conform.ts prints it.
 */
import { existsSync, mkdirSync, readFileSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { LuoError } from '../errno.ts';
import { compareRuns, type DivergenceGroup, groupDivergences, type KnownDivergence, type SeedComparison } from './compare.ts';
import { buildGuestTools, type GuestTools } from './guest.ts';
import { buildHostTools, type HostTools, runOnLuo } from './luo-side.ts';
import { generate, type Program } from './program.ts';
import { type KernelRun, kvmWorks, runOnKernel } from './qemu.ts';

/** "1-100", "7", "1,3,10-12": the seeds, in order, each once. EINVAL naming the bad part. */
export function parseSeeds(spec: string): number[] {
  const out = new Set<number>();
  for (const part of spec.split(',')) {
    const m = /^\s*(\d{1,9})\s*(?:-\s*(\d{1,9})\s*)?$/.exec(part);
    const from = m ? Number(m[1]) : NaN;
    const to = m?.[2] !== undefined ? Number(m[2]) : from;
    if (!m || to < from || to - from >= 1_000_000) throw new LuoError('EINVAL', `--seeds ${spec}: "${part}" is not a seed or a range FROM-TO (e.g. 1-100)`);
    for (let s = from; s <= to; s++) out.add(s);
  }
  return [...out];
}

export interface ConformOptions {
  readonly kernel: string;
  readonly seeds: readonly number[];
  readonly jobs?: number;
  readonly release?: string;
  /** Operations per stage (default 300) and stages (default 3: cold boot, kexec, kexec). */
  readonly ops?: number;
  readonly stages?: number;
  readonly known?: readonly KnownDivergence[];
  /** Where the tools are built (the cache). */
  readonly toolsDir: string;
  /** QEMU's accelerator; auto (the default): kvm when kvmWorks() says so, else tcg. */
  readonly accel?: 'tcg' | 'kvm' | 'auto';
  readonly stallSeconds?: number;
  /** Called as each seed finishes. */
  readonly onSeed?: (r: SeedResult, done: number, total: number) => void;
}

export interface SeedResult {
  readonly comparison: SeedComparison;
  readonly kernel: KernelRun;
  readonly luo: KernelRun;
}

export interface ConformReport {
  readonly kernel: string;
  /** The accelerator the kernel side ran with. */
  readonly accel: 'tcg' | 'kvm';
  readonly release?: string;
  readonly ops: number;
  readonly stages: number;
  readonly results: SeedResult[];
  readonly groups: DivergenceGroup[];
  readonly identical: number;
  readonly divergent: number;
  /** Divergent seeds whose group the known-divergences file does not list. */
  readonly unlisted: number;
}

export interface Tools {
  readonly guest: GuestTools;
  readonly host: HostTools;
}

export function buildTools(dir: string): Tools {
  return { guest: buildGuestTools(`${dir}/guest`), host: buildHostTools(`${dir}/host`) };
}

/** The program of a seed, as run. */
export const programOf = (seed: number, ops = 300, stages = 3): Program => generate(seed, { opsPerStage: ops, stages });

/** Runs one seed on both sides at once. */
export async function runSeed(seed: number, tools: Tools, opts: Omit<ConformOptions, 'seeds' | 'toolsDir' | 'onSeed' | 'known' | 'jobs' | 'accel'> & { accel?: 'tcg' | 'kvm' }): Promise<SeedResult> {
  const prog = programOf(seed, opts.ops, opts.stages);
  const [kernel, luo] = await Promise.all([
    runOnKernel(prog, { kernel: opts.kernel, tools: tools.guest, ...(opts.accel ? { accel: opts.accel } : {}), ...(opts.stallSeconds ? { stallSeconds: opts.stallSeconds } : {}) }),
    runOnLuo(prog, { tools: tools.host, ...(opts.release ? { release: opts.release } : {}) }),
  ]);
  return { comparison: compareRuns(seed, kernel, luo), kernel, luo };
}

/**
 * The accelerator to use: kvm or tcg as asked; auto: kvm when it works here. The probe's answer is
 * kept in `cacheDir` for this boot of the host and this kernel file, so only the first run waits
 * for a /dev/kvm that hangs.
 */
export async function resolveAccel(accel: 'tcg' | 'kvm' | 'auto' | undefined, kernel: string, cacheDir?: string): Promise<'tcg' | 'kvm'> {
  if (accel === 'tcg' || accel === 'kvm') return accel;
  let key = '';
  try {
    key = `${readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()} ${realpathSync(kernel)} ${statSync(kernel).mtimeMs}`;
  } catch {
    /* no boot id: probe every time */
  }
  const file = cacheDir ? join(cacheDir, 'kvm-probe.json') : undefined;
  if (file && key && existsSync(file)) {
    try {
      const c = JSON.parse(readFileSync(file, 'utf8')) as { key?: string; kvm?: boolean };
      if (c.key === key && typeof c.kvm === 'boolean') return c.kvm ? 'kvm' : 'tcg';
    } catch {
      /* a damaged cache file: probe again */
    }
  }
  const kvm = await kvmWorks(kernel);
  if (file && key) {
    mkdirSync(cacheDir!, { recursive: true });
    writeFileSync(file, `${JSON.stringify({ key, kvm })}\n`);
  }
  return kvm ? 'kvm' : 'tcg';
}

export async function conformRun(opts: ConformOptions): Promise<ConformReport> {
  const tools = buildTools(opts.toolsDir);
  const accel = await resolveAccel(opts.accel, opts.kernel, opts.toolsDir);
  const ops = opts.ops ?? 300;
  const stages = opts.stages ?? 3;
  const results: SeedResult[] = new Array(opts.seeds.length);
  let next = 0;
  let done = 0;
  const worker = async (): Promise<void> => {
    while (next < opts.seeds.length) {
      const i = next++;
      results[i] = await runSeed(opts.seeds[i]!, tools, { kernel: opts.kernel, ops, stages, accel, ...(opts.release ? { release: opts.release } : {}), ...(opts.stallSeconds ? { stallSeconds: opts.stallSeconds } : {}) });
      opts.onSeed?.(results[i]!, ++done, opts.seeds.length);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.jobs ?? 1, opts.seeds.length)) }, worker));
  const comparisons = results.map((r) => r.comparison);
  const groups = groupDivergences(comparisons, opts.known ?? []);
  const unlisted = groups.filter((g) => !g.known).reduce((n, g) => n + g.seeds.length, 0);
  const identical = comparisons.filter((c) => c.identical).length;
  return { kernel: opts.kernel, accel, ...(opts.release ? { release: opts.release } : {}), ops, stages, results, groups, identical, divergent: comparisons.length - identical, unlisted };
}
