/**
 * `luo conform kernel | run | show`: differential testing of a real kernel (under QEMU) against luo
 * with generated uAPI programs (src/conform/). Exit status of `run`: 0 when every divergence is
 * listed in the known-divergences file, 1 otherwise; 2 for usage errors.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isLuoError } from '../errno.ts';
import { FileSchemaError } from '../schema/yaml-file.ts';
import { compareRuns, type DivergenceGroup, normalizeLine, parseKnown, type KnownDivergence } from '../conform/compare.ts';
import { buildKernel, defaultCacheDir, defaultKernel } from '../conform/kernel.ts';
import { stageText } from '../conform/program.ts';
import type { KernelRun } from '../conform/qemu.ts';
import { buildTools, conformRun, type ConformReport, parseSeeds, programOf, resolveAccel, runSeed } from '../conform/run.ts';
import { bold, dim, green, red } from './style.ts';

const style = { bold, dim, good: green, bad: red };

const fail = (msg: string, code = 2): number => {
  process.stderr.write(`luo conform: ${msg}\n`);
  return code;
};

function intOpt(v: string | undefined, name: string, min: number, max: number, dflt: number): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || n < min || n > max) throw new RangeError(`${name} ${v}: expected an integer from ${min} to ${max}`);
  return n;
}

function accelOpt(v: string | undefined): 'tcg' | 'kvm' | 'auto' | undefined {
  if (v === undefined || v === 'tcg' || v === 'kvm' || v === 'auto') return v;
  throw new RangeError(`--accel ${v}: expected auto, tcg or kvm`);
}

function kernelOpt(v: string | undefined): string {
  const k = v ?? defaultKernel();
  if (!k) throw new RangeError('no --kernel given and no kernel built yet: run `luo conform kernel` (or pass --kernel bzImage)');
  if (!existsSync(k)) throw new RangeError(`--kernel ${k}: no such file`);
  return k;
}

// ---------------------------------------------------------------- kernel

export interface KernelCliOptions {
  source?: string;
  out?: string;
  jobs?: string;
  json?: boolean;
}

export async function conformKernelCli(opts: KernelCliOptions): Promise<number> {
  let jobs: number;
  try {
    jobs = intOpt(opts.jobs, '-j', 1, 256, 2);
  } catch (e) {
    return fail((e as Error).message);
  }
  try {
    const r = await buildKernel({ ...(opts.source ? { source: opts.source } : {}), ...(opts.out ? { out: opts.out } : {}), jobs, log: (l) => process.stderr.write(`luo conform: ${l}\n`) });
    if (opts.json) process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    else process.stdout.write(`${r.bzImage}\n${style.dim(`Linux ${r.version} from ${r.source}; ${r.built ? `built in ${r.seconds.toFixed(0)} s` : 'already built'}`)}\n`);
    return 0;
  } catch (e) {
    if (isLuoError(e)) return fail(e.detail, 1);
    throw e;
  }
}

// ---------------------------------------------------------------- run

export interface RunCliOptions {
  kernel?: string;
  seeds?: string;
  jobs?: string;
  release?: string;
  ops?: string;
  stages?: string;
  known?: string;
  accel?: string;
  json?: boolean;
}

/** The command that reruns one seed as this run did. */
function rerun(seed: number, opts: { kernel: string; ops: number; stages: number; release?: string }): string {
  return `luo conform show ${seed} --kernel ${opts.kernel}${opts.ops !== 300 ? ` --ops ${opts.ops}` : ''}${opts.stages !== 3 ? ` --stages ${opts.stages}` : ''}${opts.release ? ` --release ${opts.release}` : ''}`;
}

/** A few lines before the first divergence, and it, from both transcripts of the group's first seed. */
function context(g: DivergenceGroup, r: ConformReport): string[] {
  const res = r.results.find((x) => x.comparison.seed === g.seeds[0]);
  const d = g.example;
  if (!res) return [];
  const stage = Math.max(0, d.stage - 1);
  const kl = res.kernel.stages[stage]?.lines ?? [];
  const ll = res.luo.stages[stage]?.lines ?? [];
  const end = d.op === 'outcome' && d.index === 0 ? Math.max(kl.length, ll.length) : d.index;
  const from = Math.max(0, end - 4);
  return sideBySide(kl.slice(from, end), ll.slice(from, end), 44).split('\n').map((l) => `    ${l}`);
}

function groupText(g: DivergenceGroup, i: number, r: ConformReport): string {
  const d = g.example;
  const seeds = g.seeds.length > 12 ? `${g.seeds.slice(0, 12).join(', ')}, … (${g.seeds.length})` : `${g.seeds.join(', ')} (${g.seeds.length})`;
  const lines = [
    `${g.known ? style.dim('known') : style.bad('NEW')} group ${i + 1}: ${g.key}`,
    `  seeds ${seeds}; ${g.cascade} more differing line(s) after the first, counted apart`,
    d.op === 'outcome' ? `  every line agreed, the runs ended differently` : `  first at stage ${d.stage}, operation ${d.index}:`,
    `    kernel: ${d.kernel ?? '(no line)'}`,
    `    luo:    ${d.luo ?? '(no line)'}`,
  ];
  lines.push(`  seed ${g.seeds[0]}, stage ${d.stage}, up to the divergence:`, ...context(g, r));
  if (g.known) lines.push(`  listed: ${g.known.why}`);
  lines.push(`  rerun: ${rerun(g.seeds[0]!, { kernel: r.kernel, ops: r.ops, stages: r.stages, ...(r.release ? { release: r.release } : {}) })}`);
  return lines.join('\n');
}

export function reportText(r: ConformReport): string {
  const out = [
    `luo conform: ${r.results.length} seed(s), ${r.stages} stages x ${r.ops} operations, kernel ${r.kernel} (QEMU ${r.accel})${r.release ? `, luo release ${r.release}` : ''}`,
    `  ${r.identical} identical, ${r.divergent} divergent in ${r.groups.length} group(s)${r.divergent ? `, ${r.unlisted} not in the known list` : ''}`,
  ];
  const stopped = r.results.filter((x) => x.kernel.outcome === 'stalled' || x.kernel.outcome === 'exited');
  if (stopped.length) out.push(style.bad(`  the kernel run of seed(s) ${stopped.map((x) => x.comparison.seed).join(', ')} did not finish (${stopped[0]!.kernel.outcome}); its console ended:\n    ${stopped[0]!.kernel.tail.slice(-8).join('\n    ')}`));
  r.groups.forEach((g, i) => out.push('', groupText(g, i, r)));
  return `${out.join('\n')}\n`;
}

export async function conformRunCli(opts: RunCliOptions): Promise<number> {
  let kernel: string;
  let seeds: number[];
  let jobs: number;
  let ops: number;
  let stages: number;
  let accel: 'tcg' | 'kvm' | 'auto' | undefined;
  let known: KnownDivergence[] = [];
  try {
    kernel = kernelOpt(opts.kernel);
    seeds = parseSeeds(opts.seeds ?? '1-10');
    jobs = intOpt(opts.jobs, '-j', 1, 64, 1);
    ops = intOpt(opts.ops, '--ops', 1, 100_000, 300);
    stages = intOpt(opts.stages, '--stages', 1, 8, 3);
    accel = accelOpt(opts.accel);
    if (opts.known) known = parseKnown(readFileSync(opts.known, 'utf8'), opts.known);
  } catch (e) {
    if (e instanceof FileSchemaError) return fail(`${opts.known} is not a known-divergences file:\n${e.message}`);
    if (isLuoError(e)) return fail(e.detail);
    if (e instanceof RangeError || (e as NodeJS.ErrnoException).code === 'ENOENT') return fail((e as Error).message);
    throw e;
  }
  try {
    const report = await conformRun({
      kernel, seeds, jobs, ops, stages, known, toolsDir: join(defaultCacheDir(), 'tools'), ...(opts.release ? { release: opts.release } : {}), ...(accel ? { accel } : {}),
      onSeed: opts.json ? undefined : (r, done, total) => {
        const c = r.comparison;
        process.stderr.write(`  [${done}/${total}] seed ${c.seed}: ${c.identical ? 'identical' : `differs (${c.key})`}\n`);
      },
    });
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ ...report, results: report.results.map((x) => ({ ...x.comparison, kernelPanic: x.kernel.panic, luoPanic: x.luo.panic })) }, null, 2)}\n`);
    } else {
      process.stdout.write(reportText(report));
    }
    return report.unlisted > 0 ? 1 : 0;
  } catch (e) {
    if (isLuoError(e)) return fail(e.detail, 1);
    throw e;
  }
}

// ---------------------------------------------------------------- show

export interface ShowCliOptions {
  kernel?: string;
  ops?: string;
  stages?: string;
  release?: string;
  accel?: string;
  json?: boolean;
}

/** Both transcripts of one stage side by side; differing lines marked. */
export function sideBySide(kernel: readonly string[], luo: readonly string[], width = 52): string {
  const out: string[] = [`  ${'kernel'.padEnd(width)}   luo`];
  for (let i = 0; i < Math.max(kernel.length, luo.length); i++) {
    const a = kernel[i] ?? '';
    const b = luo[i] ?? '';
    const same = normalizeLine(a) === normalizeLine(b);
    out.push(`${same ? ' ' : style.bad('!')} ${a.padEnd(width).slice(0, width)} ${same ? '|' : style.bad('|')} ${b}`);
  }
  return out.join('\n');
}

export async function conformShowCli(seedArg: string, opts: ShowCliOptions): Promise<number> {
  let ops: number;
  let stages: number;
  let accel: 'tcg' | 'kvm' | 'auto' | undefined;
  let seed: number;
  try {
    seed = intOpt(seedArg, 'SEED', 0, 999_999_999, 0);
    ops = intOpt(opts.ops, '--ops', 1, 100_000, 300);
    stages = intOpt(opts.stages, '--stages', 1, 8, 3);
    accel = accelOpt(opts.accel);
  } catch (e) {
    return fail((e as Error).message);
  }
  const prog = programOf(seed, ops, stages);
  let kernel: string | undefined;
  try {
    kernel = opts.kernel || defaultKernel() ? kernelOpt(opts.kernel) : undefined;
  } catch (e) {
    return fail((e as Error).message);
  }
  let runs: { kernel?: KernelRun; luo: KernelRun };
  try {
    const tools = buildTools(join(defaultCacheDir(), 'tools'));
    if (kernel) {
      const r = await runSeed(seed, tools, { kernel, ops, stages, accel: await resolveAccel(accel, kernel, join(defaultCacheDir(), 'tools')), ...(opts.release ? { release: opts.release } : {}) });
      runs = { kernel: r.kernel, luo: r.luo };
    } else {
      const { runOnLuo } = await import('../conform/luo-side.ts');
      runs = { luo: await runOnLuo(prog, { tools: tools.host, ...(opts.release ? { release: opts.release } : {}) }) };
    }
  } catch (e) {
    if (isLuoError(e)) return fail(e.detail, 1);
    throw e;
  }
  const cmp = runs.kernel ? compareRuns(seed, runs.kernel, runs.luo) : undefined;
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ seed, ops, stages, program: prog.stages.map((s) => stageText(s).trim().split('\n')), kernel: runs.kernel, luo: runs.luo, comparison: cmp }, null, 2)}\n`);
    return cmp && !cmp.identical ? 1 : 0;
  }
  const out: string[] = [];
  for (const [i, st] of prog.stages.entries()) {
    out.push(style.bold(`stage ${i + 1}${i === 0 ? ' (cold boot)' : ' (after a kexec)'}: ${st.length} operations`));
    if (runs.kernel) out.push(sideBySide(runs.kernel.stages[i]?.lines ?? [], runs.luo.stages[i]?.lines ?? []));
    else out.push(...st.map((o, j) => `  ${String(j + 1).padStart(4)} ${o.name} ${o.args.join(' ')}   ->  ${runs.luo.stages[i]?.lines[j] ?? '(no line)'}`));
  }
  if (runs.kernel) {
    out.push(`kernel: ${runs.kernel.outcome}${runs.kernel.panic ? ` (${runs.kernel.panic})` : ''}; luo: ${runs.luo.outcome}${runs.luo.panic ? ` (${runs.luo.panic})` : ''}`);
    out.push(cmp!.identical ? style.good('identical') : style.bad(`differs: ${cmp!.key} (stage ${cmp!.first?.stage}, operation ${cmp!.first?.index})`));
  } else {
    out.push(style.dim('no kernel: give --kernel bzImage (or run `luo conform kernel`) to see the real kernel beside luo'));
  }
  process.stdout.write(`${out.join('\n')}\n`);
  return cmp && !cmp.identical ? 1 : 0;
}
