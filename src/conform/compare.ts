/**
 * Comparing a program's two runs (the real kernel's and luo's): transcripts are normalized (fd
 * numbers are not compared, only whether an fd came back), the first divergent line is the root
 * cause and the differing lines after it the cascade, seeds are grouped by root cause, and groups
 * the user listed as known (a file of operations and reasons) do not fail the run. Pure functions.
 */
import * as z from 'zod';
import { checkYaml, FileSchemaError, loadYaml } from '../schema/yaml-file.ts';
import { fields, listOf, text } from '../schema/values.ts';
import type { KernelRun } from './qemu.ts';

/** Operations whose result is an fd number. */
const FD_OPS = new Set(['open', 'create', 'rsession', 'memfd', 'rfd', 'dup']);

/** "<n> <op> r=<fd>" becomes "<n> <op> r=fd": which fd the kernel picked is not compared. */
export function normalizeLine(line: string): string {
  const m = /^(\d+) (\S+) r=(-?\d+)( .*)?$/.exec(line);
  if (!m || !FD_OPS.has(m[2]!) || Number(m[3]) < 0) return line;
  return `${m[1]} ${m[2]} r=fd${m[4] ?? ''}`;
}

/** What a line says after its index and operation: the result part that is compared. */
export const resultOf = (line: string | undefined): string => (line === undefined ? '(no line)' : line.replace(/^\d+ \S+ /, ''));
export const opOf = (line: string | undefined): string | undefined => (line ? /^\d+ (\S+)/.exec(line)?.[1] : undefined);

export interface Divergence {
  readonly stage: number;
  /** 1-based operation number in that stage. */
  readonly index: number;
  readonly op: string;
  readonly kernel?: string;
  readonly luo?: string;
}

export interface SeedComparison {
  readonly seed: number;
  readonly identical: boolean;
  /** The root cause: the first divergent line (or the outcome, when every line agreed). */
  readonly first?: Divergence;
  /** Differing lines after the first one, over all stages. */
  readonly cascade: number;
  /** The group this seed falls in (undefined when identical). */
  readonly key?: string;
  readonly kernelOutcome: KernelRun['outcome'];
  readonly luoOutcome: KernelRun['outcome'];
}

/** The group key of a divergence: the operation and both results (fd numbers left out). */
export function groupKey(d: Divergence): string {
  const r = (l: string | undefined) => resultOf(l === undefined ? undefined : normalizeLine(l));
  return `${d.op}: kernel ${r(d.kernel)} | luo ${r(d.luo)}`;
}

/** Compares the two runs of one seed. */
export function compareRuns(seed: number, kernel: KernelRun, luo: KernelRun): SeedComparison {
  let first: Divergence | undefined;
  let cascade = 0;
  const stages = Math.max(kernel.stages.length, luo.stages.length);
  for (let s = 0; s < stages; s++) {
    const ra = kernel.stages[s]?.lines ?? [];
    const rb = luo.stages[s]?.lines ?? [];
    for (let i = 0; i < Math.max(ra.length, rb.length); i++) {
      const a = ra[i];
      const b = rb[i];
      if (a !== undefined && b !== undefined && normalizeLine(a) === normalizeLine(b)) continue;
      if (first) {
        cascade++;
        continue;
      }
      // the lines as printed (fd numbers too), though compared without them
      first = { stage: s + 1, index: i + 1, op: opOf(a) ?? opOf(b) ?? '?', ...(a !== undefined ? { kernel: a } : {}), ...(b !== undefined ? { luo: b } : {}) };
    }
  }
  const outcomes = { kernelOutcome: kernel.outcome, luoOutcome: luo.outcome };
  const runOut = !first || first.kernel === undefined || first.luo === undefined;
  if (runOut && kernel.outcome !== luo.outcome) {
    // the lines agree as far as both go, but one side panicked or stopped: that is the root cause
    const said = (r: KernelRun) => `${r.outcome}${r.panic ? ` (${r.panic})` : ''}`;
    const d: Divergence = { stage: first?.stage ?? stages, index: first?.index ?? 0, op: 'outcome', kernel: said(kernel), luo: said(luo) };
    return { seed, identical: false, first: d, cascade: first ? cascade + 1 : 0, key: `outcome: kernel ${said(kernel)} | luo ${said(luo)}`, ...outcomes };
  }
  if (!first) return { seed, identical: true, cascade: 0, ...outcomes };
  return { seed, identical: false, first, cascade, key: groupKey(first), ...outcomes };
}

// ---------------------------------------------------------------- known divergences

export interface KnownDivergence {
  /** The operation of the first divergent line (`outcome` for a run that ended differently). */
  readonly op: string;
  /** Text the kernel's line (or outcome) contains, e.g. "r=-1 e=EBUSY" or "panic". */
  readonly kernel?: string;
  /** Text luo's line contains. */
  readonly luo?: string;
  /** Why it is expected, in the user's words (reported beside the group). */
  readonly why: string;
}

const KNOWN_SCHEMA = fields({
  divergences: listOf(fields({ op: text({ nonEmpty: true }), kernel: text().optional(), luo: text().optional(), why: text({ nonEmpty: true }) })),
}) as unknown as z.ZodType<{ divergences: KnownDivergence[] }>;

/** Parses a known-divergences file (YAML `divergences:` a list of {op, kernel?, luo?, why}); FileSchemaError with places. */
export function parseKnown(textIn: string, file: string): KnownDivergence[] {
  const fail = (f: string, issues: ConstructorParameters<typeof FileSchemaError>[1]) => new FileSchemaError(f, issues);
  return checkYaml(loadYaml(textIn, file, fail), KNOWN_SCHEMA, file, fail).divergences;
}

/** The known entry that explains a divergence, if any. */
export function knownFor(d: Divergence, known: readonly KnownDivergence[]): KnownDivergence | undefined {
  return known.find((k) => k.op === d.op && (k.kernel === undefined || (d.kernel ?? '').includes(k.kernel)) && (k.luo === undefined || (d.luo ?? '').includes(k.luo)));
}

export interface DivergenceGroup {
  readonly key: string;
  readonly seeds: number[];
  /** The first seed's divergence, as the group's example. */
  readonly example: Divergence;
  readonly cascade: number;
  readonly known?: KnownDivergence;
}

/** Groups the divergent seeds by root cause, biggest group first. */
export function groupDivergences(results: readonly SeedComparison[], known: readonly KnownDivergence[] = []): DivergenceGroup[] {
  const groups = new Map<string, { seeds: number[]; example: Divergence; cascade: number }>();
  for (const r of results) {
    if (r.identical || !r.first || !r.key) continue;
    const g = groups.get(r.key) ?? { seeds: [], example: r.first, cascade: 0 };
    g.seeds.push(r.seed);
    g.cascade += r.cascade;
    groups.set(r.key, g);
  }
  return [...groups.entries()]
    .map(([key, g]) => {
      const k = knownFor(g.example, known);
      return { key, ...g, ...(k ? { known: k } : {}) };
    })
    .sort((a, b) => b.seeds.length - a.seeds.length || a.key.localeCompare(b.key));
}
