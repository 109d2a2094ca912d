/**
 * FDT benchmark against libfdt on a large KHO-shaped root (thousands of subtrees, each with native
 * u64 preserved-data and blob-size): sequential write, parse-and-walk, lookups by path and name,
 * and the kho_add_subtree edit cycle. The C baseline (bench/native/fdt_bench.c, built here with gcc
 * -lfdt) does the same work in the same run; checksums prove both did it and got the same bytes.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FdtSw } from '../src/fdt/sw.ts';
import { FdtRw } from '../src/fdt/rw.ts';
import { Fdt } from '../src/fdt/ro.ts';
import type { Bench, BenchResult } from './run.ts';

const here = dirname(fileURLToPath(import.meta.url));

const N = 3000;
const BUILD_REPS = 40;
const WALK_REPS = 40;
const LOOKUPS = 1000;
const RW_N = 400;
const RW_REPS = 4;

function nativeBench(): string {
  const src = join(here, 'native/fdt_bench.c');
  const bin = join(here, 'native/fdt_bench.bin');
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    try {
      execFileSync('gcc', ['-O2', '-o', bin, src, '-lfdt'], { stdio: 'pipe' });
    } catch (e) {
      const err = e as { code?: string; stderr?: Buffer };
      throw new Error(`cannot build the libfdt baseline (needs gcc and libfdt-dev: sudo apt-get install gcc libfdt-dev): ${err.code === 'ENOENT' ? 'gcc not found' : err.stderr?.toString() ?? String(e)}`);
    }
  }
  return bin;
}

function fnv(b: Uint8Array): string {
  let h = 2166136261;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 16777619) >>> 0;
  return h.toString(16).padStart(8, '0');
}

/** The C side's batch count: each figure is the best of this many batches. */
const BATCHES = 5;

/** Best of BATCHES batches of `reps` runs of `fn`, after a warm-up batch; nanoseconds per run. */
function time(reps: number, fn: () => void): number {
  for (let i = 0; i < reps; i++) fn();
  let best = Infinity;
  for (let b = 0; b < BATCHES; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < reps; i++) fn();
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / reps);
  }
  return best;
}

const names = Array.from({ length: Math.max(N, RW_N) }, (_, i) => `subtree-${i}`);
const paths = Array.from({ length: N }, (_, i) => `/subtree-${i}`);
const pas = Array.from({ length: Math.max(N, RW_N) }, (_, i) => 0x100000000n + BigInt(i) * 0x1000n);
const sizes = Array.from({ length: Math.max(N, RW_N) }, (_, i) => 32n + BigInt(i));

function build(buf: Uint8Array, n: number): FdtSw {
  const sw = new FdtSw(buf);
  sw.finishReservemap();
  sw.beginNode('');
  sw.propertyString('compatible', 'kho-v4');
  sw.propertyLeU64('preserved-memory-map', 0x1ef000n);
  for (let i = 0; i < n; i++) {
    sw.beginNode(names[i]!);
    sw.propertyLeU64('preserved-data', pas[i]!);
    sw.propertyLeU64('blob-size', sizes[i]!);
    sw.endNode();
  }
  sw.endNode();
  sw.finish();
  return sw;
}

function walk(blob: Uint8Array): bigint {
  let acc = 0;
  const fdt = Fdt.open(blob);
  fdt.walkNodes((off, depth, name) => {
    acc += name.length + depth;
    fdt.forEachProperty(off, (pn, v) => {
      acc += v.length + pn.charCodeAt(0) + v[0]!;
    });
  });
  return BigInt(acc);
}

function le64(v: Uint8Array | undefined): bigint {
  if (!v) throw new Error('lookup: property missing');
  return new DataView(v.buffer, v.byteOffset, 8).getBigUint64(0, true);
}

function lookups(blob: Uint8Array): bigint {
  const fdt = Fdt.open(blob);
  let sum = 0n;
  let x = 12345;
  for (let i = 0; i < LOOKUPS; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    const off = fdt.pathOffset(paths[(x >>> 8) % N]!);
    sum += le64(fdt.getProp(off, 'preserved-data'));
    sum += le64(fdt.getProp(off, 'blob-size'));
  }
  return BigInt.asUintN(64, sum);
}

function khoAdds(page: Uint8Array): void {
  const sw = new FdtSw(page);
  sw.finishReservemap();
  sw.beginNode('');
  sw.propertyString('compatible', 'kho-v4');
  sw.propertyLeU64('preserved-memory-map', 0x1ef000n);
  sw.endNode();
  sw.finish();
  for (let i = 0; i < RW_N; i++) {
    const rw = FdtRw.openInto(page, page, page.length);
    const off = rw.addSubnode(0, names[i]!);
    rw.setPropLeU64(off, 'preserved-data', pas[i]!);
    rw.setPropLeU64(off, 'blob-size', sizes[i]!);
    rw.pack();
  }
}

const bench: Bench = {
  baseline: 'libfdt',
  run(): BenchResult[] {
    const out = execFileSync(nativeBench(), [N, BUILD_REPS, WALK_REPS, LOOKUPS, RW_N, RW_REPS].map(String), { encoding: 'utf8' });
    const c = new Map(out.trim().split('\n').map((l) => {
      const [k, ns, sum] = l.split(' ');
      return [k!, { ns: Number(ns), sum: sum! }] as const;
    }));
    const base = (k: string): { ns: number; sum: string } => {
      const v = c.get(k);
      if (!v) throw new Error(`libfdt baseline printed no "${k}" line:\n${out}`);
      return v;
    };
    const same = (what: string, luo: string, libfdt: string): void => {
      if (luo !== libfdt) throw new Error(`${what}: luo's checksum ${luo} differs from libfdt's ${libfdt}`);
    };

    const buf = new Uint8Array(256 + N * 96);
    const buildNs = time(BUILD_REPS, () => build(buf, N));
    const blob = build(buf, N).blob();
    same('build', fnv(blob), base('build').sum);

    const walkNs = time(WALK_REPS, () => walk(blob));
    same('walk', walk(blob).toString(), base('walk').sum);

    const lookupNs = time(1, () => lookups(blob)) / LOOKUPS;
    same('lookup', lookups(blob).toString(), base('lookup').sum);

    const page = new Uint8Array(256 + RW_N * 96);
    const rwNs = time(RW_REPS, () => khoAdds(page));
    same('rw', fnv(page), base('rw').sum);

    return [
      { what: `(a) sequential write, ${N} subtrees (${blob.length} B)`, luoNs: buildNs, baselineNs: base('build').ns },
      { what: `(b) parse + walk every node and property`, luoNs: walkNs, baselineNs: base('walk').ns },
      { what: `(c) lookup by path + 2 getprop (per lookup)`, luoNs: lookupNs, baselineNs: base('lookup').ns },
      { what: `(d) ${RW_N}x kho_add_subtree (open_into/add/2x setprop/pack)`, luoNs: rwNs, baselineNs: base('rw').ns },
    ];
  },
};

export default bench;
