/**
 * KHO at scale: a machine with 1 TiB of RAM address space preserves 512 GiB as guest memory would
 * look (256 GiB of 2 MiB folios, 256 GiB of 1 GiB page ranges) plus 100 000 scattered 4 KiB pages,
 * kexecs, and the new kernel walks the tracker, reserves every block and restores everything.
 *
 * Prints the time of each phase, the tracker's size per preserved GiB and host memory, each line
 * ending in a ratio. Two floors, measured in the same run: a JS loop that only reads the tracker's
 * bytes, and a C program of ours (bench/native/kho_walk.c, built with the machine's gcc -O2) doing
 * on the same tracker pages what the kernel does in C before memblock — walk, decode, sort,
 * coalesce into ranges. Targets: the new kernel's walk-and-reserve within 5x of the C floor, host
 * memory under 1 GiB. The same scenario at 1/16 and 1/4 of the blocks gives each phase's scaling
 * exponent (time ~ blocks^k; 1 is linear).
 *
 * Also a correctness check (not a test): sampled preserved pages written before the kexec read back
 * identical after restore, and sampled unpreserved pages read as poison.
 *
 *     node --import tsx bench/kho.ts
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMainThread, Worker, workerData } from 'node:worker_threads';
import { PAGE_SIZE } from '../src/abi/kho.ts';
import { Machine } from '../src/kernel/machine.ts';
import { khoProfileOf } from '../src/kernel/build.ts';
import { khoMemoryInit } from '../src/kho/incoming.ts';
import { walkIncomingTree } from '../src/kho/radix.ts';
import { readIncomingRoot } from '../src/kho/root-fdt.ts';
import { isPoisoned } from '../src/machine/memory.ts';

const GiB = 2 ** 30;
const MiB = 2 ** 20;
const RAM = 1n << 40n;
const RUN_PAGES = 262144; // 1 GiB
const FULL_RUNS = 256; // 256 GiB of 1 GiB ranges
const FOLIO_ORDER = 9; // 2 MiB
const FULL_FOLIOS = 131072; // 256 GiB of 2 MiB folios
const FULL_SMALL = 100_000; // scattered 4 KiB pages
/** The scenario's sizes, as fractions of the full one: three points for the scaling exponents. */
const SCALES = [1 / 16, 1 / 4, 1] as const;
const SAMPLE = 1000; // pages of each kind written before the kexec and checked after
const SEED = 0x6b686f21;

/** mulberry32: a small deterministic PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The page content the sample check expects for `pfn`: a pattern no other page has. */
function pattern(pfn: number): Uint8Array {
  const out = new Uint8Array(PAGE_SIZE);
  const words = new Uint32Array(out.buffer);
  const next = prng(pfn ^ SEED);
  for (let i = 0; i < words.length; i++) words[i] = (next() * 4294967296) >>> 0;
  return out;
}

const pa = (pfn: number): bigint => BigInt(pfn) * BigInt(PAGE_SIZE);

/** Reads every byte of the given pages: the least any walk of the same tracker has to do. */
function readFloor(m: Machine, pfns: readonly number[]): number {
  let acc = 0;
  for (const pfn of pfns) {
    const p = m.memory.page(pfn);
    for (let i = 0; i < PAGE_SIZE; i++) acc ^= p[i]!;
  }
  return acc;
}

function timeBest(runs: number, f: () => void): number {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    f();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

interface Row {
  name: string;
  value: string;
  detail: string;
  ratio: string;
}

const ms = (t: number): string => `${t.toFixed(1)} ms`;
const mib = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;
const x = (r: number): string => `${r.toFixed(r < 10 ? 2 : 1)}x`;

function printRows(title: string, rows: readonly Row[]): void {
  const w = (k: keyof Row): number => Math.max(...rows.map((r) => r[k].length));
  const [wn, wv, wd, wr] = [w('name'), w('value'), w('detail'), w('ratio')];
  console.log(title);
  for (const r of rows) console.log(`  ${r.name.padEnd(wn)}  ${r.value.padStart(wv)}  ${r.detail.padEnd(wd)}  ${r.ratio.padStart(wr)}`);
}

/** Thrown when the kexec overflows the stack (see runKhoBench). */
class KexecStackOverflow extends Error {}

/** Stack for the fallback worker: enough for Array.push(...ranges) with millions of ranges. */
const WORKER_STACK_MB = 256;

/**
 * Runs the benchmark in this thread. If the kexec overflows the stack (Kernel.kexec passes every
 * hand-over range to one Array.push call, and this run has ~180k of them: more arguments than
 * Node's default ~1 MiB stack holds), says so and runs it again in a worker thread with a larger
 * stack, so that the numbers still come out.
 */
export async function runKhoBench(): Promise<void> {
  try {
    await scenario();
  } catch (e) {
    if (!(e instanceof KexecStackOverflow)) throw e;
    console.log(`kho: ${e.message}; running again in a worker thread with a ${WORKER_STACK_MB} MiB stack`);
    await new Promise<void>((resolve, reject) => {
      // Workers do not inherit --import tsx: register it there before loading this module.
      const src =
        `(async () => { const { register } = await import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}); register(); ` +
        `await import(${JSON.stringify(import.meta.url)}); })().catch((e) => { console.error(e); process.exit(1); });`;
      const w = new Worker(src, { eval: true, workerData: { khoBench: true }, resourceLimits: { stackSizeMb: WORKER_STACK_MB } });
      w.on('error', reject);
      w.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`kho bench worker exited with code ${code}`))));
    });
  }
}

/** One run's figures (ms unless named otherwise), for the scaling table. */
interface Figures {
  blocks: number;
  phases: Record<string, number>;
}

const here = dirname(fileURLToPath(import.meta.url));

/** bench/native/kho_walk built with gcc -O2 (again when the source is newer). */
function nativeWalk(): string {
  const src = join(here, 'native/kho_walk.c');
  const bin = join(here, 'native/kho_walk.bin');
  if (!existsSync(bin) || statSync(bin).mtimeMs < statSync(src).mtimeMs) {
    try {
      execFileSync('gcc', ['-O2', '-o', bin, src], { stdio: 'pipe' });
    } catch (e) {
      const err = e as { code?: string; stderr?: Buffer };
      throw new Error(`cannot build the C floor (needs gcc: sudo apt-get install gcc): ${err.code === 'ENOENT' ? 'gcc not found' : err.stderr?.toString() ?? String(e)}`);
    }
  }
  return bin;
}

/**
 * The C floor on the tracker pages `pfns` of `m` (root at `rootPa`): their bytes go to a file, the
 * C program walks, sorts and coalesces them (best of 5) and says how many blocks and ranges it found.
 */
function cFloor(m: Machine, pfns: readonly number[], rootPa: bigint): { ms: number; blocks: number; ranges: number } {
  const dir = mkdtempSync(join(tmpdir(), 'luo-kho-bench-'));
  try {
    const file = join(dir, 'tracker.bin');
    const sorted = [...pfns].sort((a, b) => a - b);
    const out = Buffer.alloc(16 + sorted.length * (8 + PAGE_SIZE));
    out.writeBigUInt64LE(rootPa, 0);
    out.writeBigUInt64LE(BigInt(sorted.length), 8);
    sorted.forEach((pfn, i) => {
      const at = 16 + i * (8 + PAGE_SIZE);
      out.writeBigUInt64LE(pa(pfn), at);
      out.set(m.memory.page(pfn), at + 8);
    });
    writeFileSync(file, out);
    const line = execFileSync(nativeWalk(), [file, String(m.memory.nrPages)], { encoding: 'utf8' }).trim();
    const [, ns, blocks, ranges] = line.split(' ');
    return { ms: Number(ns) / 1e6, blocks: Number(blocks), ranges: Number(ranges) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function scenario(): Promise<void> {
  const runs: Figures[] = [];
  for (const scale of SCALES) runs.push(await scenarioAt(scale, scale === 1));
  printScaling(runs);
}

/** Each phase at the three sizes, and its exponent k in time ~ blocks^k from the smallest to the largest. */
function printScaling(runs: readonly Figures[]): void {
  const first = runs[0]!;
  const last = runs[runs.length - 1]!;
  const rows: Row[] = Object.keys(last.phases).map((name) => {
    const k = Math.log(last.phases[name]! / first.phases[name]!) / Math.log(last.blocks / first.blocks);
    return { name, value: runs.map((r) => ms(r.phases[name]!)).join(' -> '), detail: '', ratio: `exponent ${k.toFixed(2)}` };
  });
  printRows(`kho: scaling over ${runs.map((r) => r.blocks.toLocaleString('en-US')).join(' -> ')} preserved blocks`, rows);
}

async function scenarioAt(scale: number, full: boolean): Promise<Figures> {
  const N_RUNS = Math.round(FULL_RUNS * scale);
  const N_FOLIOS = Math.round(FULL_FOLIOS * scale);
  const N_SMALL = Math.round(FULL_SMALL * scale);
  const rand = prng(SEED);
  let peakRss = 0;
  const sampleRss = (): void => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  };

  // ---------------------------------------------------------------- cold boot
  let t = performance.now();
  const machine = new Machine({ ramSize: RAM });
  const coldBootMs = performance.now() - t;
  const k0 = machine.kernel;
  const kho0 = k0.kho;
  if (!kho0) throw new Error('KHO is off on the first kernel');
  sampleRss();

  // ---------------------------------------------------------------- allocate
  // 1 GiB ranges first (alloc_contig_pages scans upwards); then, from the top of memory down,
  // 2 MiB folios interleaved with scattered 4 KiB pages. Each 4 KiB page sits alone in its own
  // 2 MiB block: the rest of the block goes to unpreserved "other kernel" allocations, and now and
  // then an unpreserved 2 MiB folio adds a gap. Everything unpreserved is poisoned by the kexec.
  t = performance.now();
  const alloc = k0.alloc;
  const runs = new Float64Array(N_RUNS);
  for (let i = 0; i < N_RUNS; i++) runs[i] = alloc.allocPages(RUN_PAGES);
  const folios = new Float64Array(N_FOLIOS);
  const small = new Float64Array(N_SMALL);
  const unpreserved: number[] = []; // a sample of unpreserved pages
  let nf = 0;
  let unpreservedFolios = 0;
  for (let i = 0; i < N_SMALL; i++) {
    const want = Math.floor(((i + 1) * N_FOLIOS) / N_SMALL);
    while (nf < want) folios[nf++] = alloc.allocFolio(FOLIO_ORDER);
    small[i] = alloc.allocFolio(0);
    // The rest of the 2 MiB block the page was split from: one block of each order 0..8.
    for (let o = 0; o < FOLIO_ORDER; o++) {
      const f = alloc.allocFolio(o);
      if (o === 0 && unpreserved.length < SAMPLE && rand() < 0.05) unpreserved.push(f);
    }
    if (rand() < 0.3) {
      const g = alloc.allocFolio(FOLIO_ORDER);
      unpreservedFolios++;
      if (unpreserved.length < SAMPLE && rand() < 0.05) unpreserved.push(g + Math.floor(rand() * 512));
    }
  }
  while (nf < N_FOLIOS) folios[nf++] = alloc.allocFolio(FOLIO_ORDER);
  const allocMs = performance.now() - t;
  sampleRss();

  // Sample pages: written now, checked after restore. Half the unpreserved sample is written too
  // (so the kexec must drop their storage), half never touched.
  const pick = (arr: Float64Array): number => arr[Math.floor(rand() * arr.length)]!;
  const samples = new Set<number>();
  while (samples.size < SAMPLE) samples.add(pick(small));
  while (samples.size < 2 * SAMPLE) samples.add(pick(folios) + Math.floor(rand() * 512));
  while (samples.size < 3 * SAMPLE) samples.add(pick(runs) + Math.floor(rand() * RUN_PAGES));
  for (const pfn of samples) machine.memory.write(pa(pfn), pattern(pfn));
  unpreserved.forEach((pfn, i) => {
    if (i % 2 === 0) machine.memory.write(pa(pfn), pattern(pfn));
  });

  // ---------------------------------------------------------------- preserve
  t = performance.now();
  for (let i = 0; i < N_RUNS; i++) kho0.preservePages(pa(runs[i]!), RUN_PAGES);
  for (let i = 0; i < N_FOLIOS; i++) kho0.preserveFolio(pa(folios[i]!), FOLIO_ORDER);
  for (let i = 0; i < N_SMALL; i++) kho0.preserveFolio(pa(small[i]!), 0);
  const preserveMs = performance.now() - t;
  sampleRss();
  const preservedBytes = kho0.preservedPages * PAGE_SIZE;
  const preservedBlocks = kho0.preservedBlocks;
  const trackerPfns = kho0.metadataPfns();
  const trackerPages = kho0.trackerPages;

  // The floor, and the walk alone (no reserve), on the tracker's pages in the same memory, just
  // before the kexec: the bytes the new kernel's walk reads. (After the boot they are free memory
  // the new kernel may already have reused.)
  readFloor(machine, trackerPfns); // warm-up
  const floorMs = timeBest(5, () => readFloor(machine, trackerPfns));
  const c = cFloor(machine, trackerPfns, kho0.memoryMapPa());
  const scratchLimits = {
    ramPages: machine.memory.nrPages,
    forbidden: k0.scratch.filter((s) => s.size > 0n).map((s, i) => ({ startPfn: Number(s.addr / 4096n), endPfn: Number((s.addr + s.size) / 4096n), what: `scratch ${i}` })),
  };
  let walked = 0;
  const walkMs = timeBest(3, () => {
    walked = walkIncomingTree(machine.memory, kho0.memoryMapPa(), scratchLimits, () => {}).blocks;
  });
  sampleRss();

  // ---------------------------------------------------------------- kexec
  // walk + checks + stamps alone (what kho_memory_init does before memblock), on the same tracker.
  const populated = {
    root: readIncomingRoot(machine.memory.page(kho0.fdtPfn), k0.build.abi.kho.compatible),
    fdtPa: kho0.rootFdtPa,
    scratchPa: 0n,
    scratch: [...k0.scratch],
  };
  let stamped = 0;
  const initMs = timeBest(3, () => {
    stamped = khoMemoryInit(machine.memory, machine.memory.nrPages, populated, khoProfileOf(k0.build), (_l, m) => {
      throw new Error(`khoMemoryInit: ${m}`);
    })?.magic.size ?? -1;
  });
  sampleRss();

  k0.kexecLoad();
  const handoverRanges = k0.handoverRanges().length;
  t = performance.now();
  let k1;
  try {
    k1 = machine.kexec();
  } catch (e) {
    if (isMainThread && e instanceof RangeError && /call stack/.test(e.message)) {
      throw new KexecStackOverflow(`kexec with ${handoverRanges} hand-over ranges: RangeError: ${e.message}`);
    }
    throw e;
  }
  const kexecMs = performance.now() - t;
  const kho1 = k1.kho;
  if (!kho1 || !k1.handover) throw new Error(`the new kernel found no hand-over:\n${k1.log.text()}`);
  const handoverMs = kexecMs - k1.bootTimeMs;
  const logT = (re: RegExp): number => {
    const l = k1.log.lines.find((line) => re.test(line.msg));
    if (!l) throw new Error(`no log line ${re}`);
    return l.t * 1000;
  };
  const walkReserveMs = logT(/reserved \d+ preserved block/) - logT(/found kexec handover data/);
  sampleRss();

  // ---------------------------------------------------------------- restore
  t = performance.now();
  let restored = 0;
  for (let i = 0; i < N_RUNS; i++) if (kho1.restorePages(pa(runs[i]!), RUN_PAGES)) restored++;
  for (let i = 0; i < N_FOLIOS; i++) if (kho1.restoreFolio(pa(folios[i]!))?.order === FOLIO_ORDER) restored++;
  for (let i = 0; i < N_SMALL; i++) if (kho1.restoreFolio(pa(small[i]!))?.order === 0) restored++;
  const restoreMs = performance.now() - t;
  sampleRss();

  // ---------------------------------------------------------------- checks
  const problems: string[] = [];
  const want = N_RUNS + N_FOLIOS + N_SMALL;
  if (restored !== want) problems.push(`restored ${restored} of ${want} blocks`);
  // What is left stamped belongs to the previous kernel's own KHO and LUO state (root FDT,
  // kexec-metadata, ...), which their subsystems may or may not have restored by now.
  if (kho1.unrestoredBlocks > preservedBlocks - want) problems.push(`${kho1.unrestoredBlocks} blocks left unrestored, at most ${preservedBlocks - want} expected`);
  if (stamped !== preservedBlocks) problems.push(`khoMemoryInit stamped ${stamped} blocks, ${preservedBlocks} were preserved`);
  if (walked !== preservedBlocks) problems.push(`the walk found ${walked} blocks, ${preservedBlocks} were preserved`);
  if (c.blocks !== preservedBlocks) problems.push(`the C floor found ${c.blocks} blocks, ${preservedBlocks} were preserved`);
  let badData = 0;
  for (const pfn of samples) {
    const got = machine.memory.read(pa(pfn), PAGE_SIZE);
    const exp = pattern(pfn);
    if (!got.every((b, i) => b === exp[i])) badData++;
  }
  let notPoison = 0;
  for (const pfn of unpreserved) if (!isPoisoned(machine.memory.read(pa(pfn), PAGE_SIZE), pa(pfn))) notPoison++;
  if (badData) problems.push(`${badData} of ${samples.size} preserved sample pages differ`);
  if (notPoison) problems.push(`${notPoison} of ${unpreserved.length} unpreserved sample pages are not poison`);
  // about 5% of the small pages' neighbours are picked, at most SAMPLE: expect at least half that
  const wantUnpreserved = Math.min(SAMPLE, N_SMALL * 0.05) / 2;
  if (unpreserved.length < wantUnpreserved) problems.push(`only ${unpreserved.length} unpreserved sample pages`);

  // ---------------------------------------------------------------- report
  const figures: Figures = {
    blocks: preservedBlocks,
    phases: {
      'C floor: walk, sort, coalesce': c.ms, 'allocate': allocMs, 'preserve': preserveMs, 'hand-over: serialize + poison': handoverMs,
      'walk + check + stamp': initMs, 'walk-and-reserve (in boot)': walkReserveMs, 'new kernel boot': k1.bootTimeMs, 'restore': restoreMs,
    },
  };
  const ok = problems.length === 0;
  if (!ok) process.exitCode = 1;
  if (!full) {
    console.log(`kho: ${preservedBlocks.toLocaleString('en-US')} blocks (1/${Math.round(1 / scale)} of the full scenario): check ${ok ? 'ok' : `FAILED: ${problems.join('; ')}`}`);
    return figures;
  }
  sampleRss();
  const mu = process.memoryUsage();
  const maxRss = process.resourceUsage().maxRSS * 1024;
  const ms1 = machine.memory.stats();
  const preservedGiB = preservedBytes / GiB;
  const trackerPerGiB = (trackerPages * PAGE_SIZE) / preservedGiB;
  const vsFloor = (v: number): string => `${x(v / floorMs)} floor`;
  const vsC = (v: number): string => `${x(v / c.ms)} C floor`;
  const budget = (b: number): string => `${x(b / GiB)} of 1 GiB`;

  const blocks = `${preservedBlocks.toLocaleString('en-US')} blocks`;
  printRows(
    `kho: 1 TiB RAM, ${preservedGiB.toFixed(1)} GiB preserved (${N_FOLIOS} x 2 MiB, ${N_RUNS} x 1 GiB, ${N_SMALL} x 4 KiB); ` +
      `tracker ${trackerPages} pages (${mib(trackerPages * PAGE_SIZE)}); floor = read the tracker's bytes (JS); C floor = kho_walk.c`,
    [
      { name: 'floor: read tracker bytes', value: ms(floorMs), detail: `${trackerPages} pages, best of 5`, ratio: vsFloor(floorMs) },
      { name: 'C floor: walk, sort, coalesce', value: ms(c.ms), detail: `${c.blocks.toLocaleString('en-US')} blocks -> ${c.ranges.toLocaleString('en-US')} ranges, gcc -O2, best of 5`, ratio: vsFloor(c.ms) },
      { name: 'cold boot (first kernel)', value: ms(coldBootMs), detail: '', ratio: vsFloor(coldBootMs) },
      { name: 'allocate', value: ms(allocMs), detail: `${want} folios/runs + ${unpreservedFolios} unpreserved 2 MiB`, ratio: vsFloor(allocMs) },
      { name: 'preserve', value: ms(preserveMs), detail: blocks, ratio: vsFloor(preserveMs) },
      { name: 'hand-over: serialize + poison', value: ms(handoverMs), detail: `${handoverRanges.toLocaleString('en-US')} ranges kept`, ratio: vsFloor(handoverMs) },
      { name: 'new kernel boot (bootTimeMs)', value: ms(k1.bootTimeMs), detail: 'memblock, walk, reserve, allocator', ratio: vsFloor(k1.bootTimeMs) },
      { name: 'walk alone (re-run)', value: ms(walkMs), detail: `${walked.toLocaleString('en-US')} blocks, best of 3`, ratio: vsFloor(walkMs) },
      { name: 'walk + check + stamp (re-run)', value: ms(initMs), detail: 'khoMemoryInit, best of 3', ratio: vsC(initMs) },
      { name: 'memblock reserve (the rest)', value: ms(walkReserveMs - initMs), detail: 'walk-and-reserve minus the above', ratio: vsFloor(walkReserveMs - initMs) },
      { name: 'restore', value: ms(restoreMs), detail: `${restored.toLocaleString('en-US')} restored`, ratio: vsFloor(restoreMs) },
      { name: 'tracker bytes per GiB', value: `${trackerPerGiB.toFixed(0)} B`, detail: 'of preserved memory', ratio: `${x(trackerPerGiB / GiB * 1e6)} ppm` },
      { name: 'host rss peak', value: mib(Math.max(peakRss, maxRss)), detail: `heap ${mib(mu.heapUsed)} now, rss ${mib(mu.rss)} now`, ratio: budget(Math.max(peakRss, maxRss)) },
      { name: 'simulated memory storage', value: mib(ms1.hostBytes), detail: `${ms1.touchedPages} pages stored, ${ms1.poisonedRanges} poison ranges`, ratio: budget(ms1.hostBytes) },
      { name: 'walk-and-reserve (in boot)', value: ms(walkReserveMs), detail: 'kernel log: found .. reserved; target 5x C', ratio: vsC(walkReserveMs) },
    ],
  );
  console.log(`  check: ${samples.size} preserved sample pages identical, ${unpreserved.length} unpreserved sample pages poison: ${ok ? 'ok' : 'FAILED'}`);
  for (const p of problems) console.log(`    ${p}`);
  return figures;
}

if (!isMainThread && (workerData as { khoBench?: boolean } | null)?.khoBench) await scenario();
else if (isMainThread && process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await runKhoBench();
