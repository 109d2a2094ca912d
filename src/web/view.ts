/**
 * What the dashboard shows of a machine, as JSON: the physical memory map computed from ranges
 * (never per page: RAM can be 1 TiB), sessions and their files, the KHO tree, the kernel log.
 * Built in-process from a Machine, or inside the daemon for STATUS (flag STATUS_MACHINE).
 *
 * The map paints layers of page ranges in priority order (free < reserved < scratch < allocated
 * < incoming KHO < preserved by order < tracker) with a sweep over their boundaries, then merges
 * equal neighbours into segments. A separate "contents" layer says which pages hold data and which
 * are poisoned (PhysicalMemory.runs). Either list is coarsened into mixed segments when it would
 * be too long for a page to draw.
 */
import { PAGE_SIZE } from '../abi/kho.ts';
import { toDts } from '../fdt/dts.ts';
import { MemfdFile } from '../handlers/memfd-file.ts';
import type { Kernel } from '../kernel/kernel.ts';
import { KernelLog } from '../kernel/log.ts';
import type { Machine } from '../kernel/machine.ts';
import { MEMBLOCK_RSRV_KERN, MEMBLOCK_RSRV_NOINIT } from '../machine/memblock.ts';
import type { LuoSession } from '../luo/session.ts';
import { flbViewJson, type FlbViewJson } from '../luo/flb.ts';

/** A run of pages in one category, or a coarsened run with its composition (category -> pages). */
export interface Segment {
  /** First pfn. */
  s: number;
  /** Pages. */
  n: number;
  /** Category id (absent for a mixed segment). */
  c?: string;
  mix?: Record<string, number>;
}

export interface CategoryInfo {
  id: string;
  label: string;
  pages: number;
}

export interface MemoryView {
  pages: number;
  pageSize: number;
  /** Ownership of every page, painted by priority. */
  segments: Segment[];
  /** Poisoned and written pages (zero pages omitted). */
  contents: Segment[];
  categories: CategoryInfo[];
  contentTotals: { poison: number; data: number; zero: number };
  coarsened: boolean;
  alloc: { managedPages: number; allocatedPages: number; freePages: number; scratchFreePages: number; folios: number | null };
  /** Milliseconds spent computing this view. */
  computeMs: number;
}

export interface FileView {
  token: string;
  handler: string;
  kind: string | null;
  size: number | null;
  pages: number | null;
  /** Incoming files: retrieved (1), not yet (0), or a negative errno. */
  retrieveStatus?: number;
}

export interface SessionView {
  name: string;
  files: FileView[];
  retrieved?: boolean;
}

export interface KhoView {
  profile: string;
  preservedPages: number;
  preservedBlocks: number;
  byOrder: Record<string, number>;
  trackerPages: number;
  scratch: Array<{ addr: string; size: string }>;
  rootFdtPa: string;
  subtrees: Array<{ name: string; pa: string; size: number }>;
  outgoingDts: string;
  incoming: { fdtPa: string; blocks: number; kexecCount: number; previousRelease: string | null; subtrees: string[]; dts: string } | null;
  finalized: boolean | null;
}

export interface MachineView {
  release: string;
  profile: string;
  cmdline: string;
  ramSize: string;
  state: string;
  panic: string | null;
  handover: boolean;
  liveupdateNum: number;
  kexecCount: number;
  bootMs: number;
  luo: { enabled: boolean; deviceRegistered: boolean; deviceOpen: boolean; handlers: string[] } | null;
  sessions: { outgoing: SessionView[]; incoming: SessionView[] };
  /** LUO subsystems (state, registered, the data the previous kernel handed over as hex) and FLBs. */
  subsystems: { state: string; registered: string[]; incoming: Record<string, string> } | null;
  flbs: FlbViewJson[];
  kho: KhoView | null;
  memory: MemoryView;
  log: string[];
}

/** Category ids and labels, in painting priority (later wins). Preserved orders are `p<order>`. */
export const BASE_CATEGORIES: ReadonlyArray<{ id: string; label: string }> = [
  { id: 'free', label: 'free' },
  { id: 'reserved', label: 'reserved (memblock)' },
  { id: 'scratch', label: 'KHO scratch' },
  { id: 'kernel', label: 'kernel (image, memmap)' },
  { id: 'allocated', label: 'allocated' },
  { id: 'incoming', label: 'handed over (incoming KHO)' },
];
export const TRACKER_CATEGORY = { id: 'tracker', label: 'KHO tracker / metadata' };
export const preservedCategory = (order: number): { id: string; label: string } => ({ id: `p${order}`, label: `preserved, order ${order} (${fmtBytes(PAGE_SIZE * 2 ** order)})` });

/** Segments above this count are coarsened into mixed segments. */
export const MAX_SEGMENTS = 6000;
const LOG_LINES = 60;

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

export function fmtBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1 && n % 1024 === 0) {
    n /= 1024;
    i++;
  }
  if (n >= 1024 && i < u.length - 1) {
    while (n >= 1024 && i < u.length - 1) {
      n /= 1024;
      i++;
    }
    return `${n.toFixed(1)} ${u[i]}`;
  }
  return `${n} ${u[i]}`;
}

type Range = readonly [start: number, end: number];

interface Layer {
  id: string;
  ranges: Range[];
}

/**
 * Paints `layers` (ascending priority) over [0, pages): every page belongs to the highest layer
 * containing it, pages in none to `base`. O(E log E) in the number of range boundaries.
 */
export function paintLayers(pages: number, base: string, layers: readonly Layer[]): Segment[] {
  const ev: number[] = [];
  // Encoded events: position, layer index and +1/-1 in parallel arrays sorted by position.
  const pos: number[] = [];
  const idx: number[] = [];
  const delta: number[] = [];
  layers.forEach((l, i) => {
    for (const [s0, e0] of l.ranges) {
      const s = Math.max(0, s0);
      const e = Math.min(pages, e0);
      if (e <= s) continue;
      pos.push(s, e);
      idx.push(i, i);
      delta.push(1, -1);
    }
  });
  for (let i = 0; i < pos.length; i++) ev.push(i);
  ev.sort((a, b) => pos[a]! - pos[b]!);
  const counts = new Array<number>(layers.length).fill(0);
  const top = (): string => {
    for (let i = layers.length - 1; i >= 0; i--) if (counts[i]! > 0) return layers[i]!.id;
    return base;
  };
  const out: Segment[] = [];
  const emit = (s: number, e: number, c: string): void => {
    if (e <= s) return;
    const last = out[out.length - 1];
    if (last && last.c === c && last.s + last.n === s) last.n += e - s;
    else out.push({ s, n: e - s, c });
  };
  let cur = 0;
  let curCat = base;
  let i = 0;
  while (i < ev.length) {
    const p = pos[ev[i]!]!;
    emit(cur, p, curCat);
    while (i < ev.length && pos[ev[i]!] === p) {
      const e = ev[i]!;
      counts[idx[e]!]! += delta[e]!;
      i++;
    }
    cur = p;
    curCat = top();
  }
  emit(cur, pages, curCat);
  return out;
}

/**
 * Merges segments into at most ~`max` pieces: neighbours are pooled into mixed segments of at
 * least pages/max pages. Large segments stay exact.
 */
export function coarsen(segs: Segment[], pages: number, max: number): { segments: Segment[]; coarsened: boolean } {
  if (segs.length <= max) return { segments: segs, coarsened: false };
  const quantum = Math.max(1, Math.ceil(pages / max));
  const out: Segment[] = [];
  let pool: Segment | undefined;
  const flush = (): void => {
    if (!pool) return;
    const keys = Object.keys(pool.mix!);
    if (keys.length === 1) out.push({ s: pool.s, n: pool.n, c: keys[0]! });
    else out.push(pool);
    pool = undefined;
  };
  for (const g of segs) {
    if (g.n >= quantum) {
      flush();
      out.push(g);
      continue;
    }
    if (pool && (pool.s + pool.n !== g.s || pool.n >= quantum)) flush();
    pool ??= { s: g.s, n: 0, mix: {} };
    pool.n += g.n;
    const add = g.mix ?? { [g.c!]: g.n };
    for (const [k, v] of Object.entries(add)) pool.mix![k] = (pool.mix![k] ?? 0) + v;
  }
  flush();
  return { segments: out, coarsened: true };
}

/** Allocated page ranges of the page allocator (its live folios and contiguous runs). */
function allocatedRanges(k: Kernel): { ranges: Range[]; folios: number | null } {
  return k.alloc.allocatedRanges();
}

const toPfnRange = (base: bigint, size: bigint): Range => {
  const ps = BigInt(PAGE_SIZE);
  return [Number(base / ps), Number((base + size + ps - 1n) / ps)];
};

export function memoryView(m: Machine, opts: { maxSegments?: number } = {}): MemoryView {
  const t0 = performance.now();
  const k = m.kernel;
  const pages = m.memory.nrPages;
  const max = opts.maxSegments ?? MAX_SEGMENTS;
  const reserved: Range[] = [];
  const kernel: Range[] = [];
  const incoming: Range[] = [];
  for (const r of k.memblock.reservedRegions()) {
    const rng = toPfnRange(r.base, r.size);
    if (r.flags & MEMBLOCK_RSRV_NOINIT) incoming.push(rng);
    else if (r.flags & MEMBLOCK_RSRV_KERN) kernel.push(rng);
    else reserved.push(rng);
  }
  // Scratch the allocator manages is the CMA pool of a kernel booted by KHO: the kernel's own early
  // allocations live in it and win. Scratch reserved as a whole (a cold boot's areas, kept for
  // the next kernel) is drawn above memblock's reservations.
  const scratchLow: Range[] = [];
  const scratchHigh: Range[] = [];
  for (const s of k.scratch.filter((a) => a.size > 0n)) {
    const r = toPfnRange(s.addr, s.size);
    (k.handover || k.alloc.isManaged(r[0]) ? scratchLow : scratchHigh).push(r);
  }
  const { ranges: allocated, folios } = allocatedRanges(k);
  const byOrder = new Map<number, Range[]>();
  const tracker: Range[] = [];
  if (k.kho && k.state === 'running') {
    k.kho.forEachPreservedBlock((pfn, order) => {
      let l = byOrder.get(order);
      if (!l) byOrder.set(order, (l = []));
      l.push([pfn, pfn + 2 ** order]);
    });
    for (const pfn of k.kho.metadataPfns()) tracker.push([pfn, pfn + 1]);
  }
  const layers: Layer[] = [
    { id: 'scratch', ranges: scratchLow },
    { id: 'reserved', ranges: reserved },
    { id: 'kernel', ranges: kernel },
    { id: 'scratch', ranges: scratchHigh },
    { id: 'allocated', ranges: allocated },
    { id: 'incoming', ranges: incoming },
    ...[...byOrder.keys()].sort((a, b) => a - b).map((o) => ({ id: `p${o}`, ranges: byOrder.get(o)! })),
    { id: 'tracker', ranges: tracker },
  ];
  const painted = paintLayers(pages, 'free', layers);
  const totals = new Map<string, number>();
  for (const g of painted) totals.set(g.c!, (totals.get(g.c!) ?? 0) + g.n);
  const labels = new Map<string, string>([...BASE_CATEGORIES, TRACKER_CATEGORY].map((c) => [c.id, c.label]));
  for (const o of byOrder.keys()) labels.set(`p${o}`, preservedCategory(o).label);
  const order = [...new Set(['free', ...BASE_CATEGORIES.map((c) => c.id), ...layers.map((l) => l.id)])];
  const categories = order.filter((id) => totals.has(id)).map((id) => ({ id, label: labels.get(id) ?? id, pages: totals.get(id)! }));

  const contentsRaw: Segment[] = [];
  const contentTotals = { poison: 0, data: 0, zero: 0 };
  for (const r of m.memory.runs(0, pages)) {
    contentTotals[r.state] += r.count;
    if (r.state !== 'zero') contentsRaw.push({ s: r.pfn, n: r.count, c: r.state });
  }
  const seg = coarsen(painted, pages, max);
  const con = coarsen(contentsRaw, pages, max);
  const st = k.alloc.stats();
  return {
    pages,
    pageSize: PAGE_SIZE,
    segments: seg.segments,
    contents: con.segments,
    categories,
    contentTotals,
    coarsened: seg.coarsened || con.coarsened,
    alloc: {
      managedPages: st.managedPages,
      allocatedPages: st.allocatedPages,
      freePages: st.normal.freePages + st.movable.freePages,
      scratchFreePages: st.movable.freePages,
      folios,
    },
    computeMs: performance.now() - t0,
  };
}

function fileViews(s: LuoSession): FileView[] {
  return s.fileSet.files.map((f) => {
    const file = f.file;
    const memfd = file instanceof MemfdFile ? file : undefined;
    return {
      token: hex(f.token),
      handler: f.handler.compatible,
      kind: file ? file.kind : null,
      size: memfd ? memfd.inode.size : null,
      pages: memfd ? memfd.inode.cachedPages : null,
      ...(s.direction === 'incoming' ? { retrieveStatus: f.retrieveStatus } : {}),
    };
  });
}

function safeDts(blob: Uint8Array): string {
  try {
    return toDts(blob);
  } catch (e) {
    return `/* cannot print: ${(e as Error).message} */\n`;
  }
}

function khoView(k: Kernel): KhoView | null {
  const kho = k.kho;
  if (!kho) return null;
  const byOrder: Record<string, number> = {};
  for (const [o, n] of [...kho.preservedByOrder()].sort((a, b) => a[0] - b[0])) byOrder[String(o)] = n;
  const inc = kho.incoming;
  return {
    profile: kho.profile,
    preservedPages: kho.preservedPages,
    preservedBlocks: kho.preservedBlocks,
    byOrder,
    trackerPages: kho.trackerPages,
    scratch: k.scratch.map((s) => ({ addr: hex(s.addr), size: hex(s.size) })),
    rootFdtPa: hex(kho.rootFdtPa),
    subtrees: [...kho.outgoingSubtrees()].map(([name, s]) => ({ name, pa: hex(s.pa), size: s.size })),
    outgoingDts: k.state === 'running' ? safeDts(kho.rootFdt()) : '',
    incoming: inc
      ? { fdtPa: hex(inc.fdtPa), blocks: inc.blocks, kexecCount: inc.kexecCount, previousRelease: inc.previousRelease ?? null, subtrees: [...inc.root.subtreeNames], dts: safeDts(inc.root.blob) }
      : null,
    finalized: kho.profile === 'kho-v1' ? kho.finalized : null,
  };
}

/** The whole view of a machine's running kernel. */
export function machineView(m: Machine, opts: { maxSegments?: number } = {}): MachineView {
  const k = m.kernel;
  const luo = k.luo;
  return {
    release: k.build.release,
    profile: k.kho?.profile ?? k.build.abi.kho.family,
    cmdline: k.cmdline.raw,
    ramSize: hex(m.memory.size),
    state: m.panic ? 'panic' : k.state,
    panic: m.panic ? m.panic.message : null,
    handover: k.handover,
    liveupdateNum: luo?.incomingNum ?? 0,
    kexecCount: k.kho?.incoming?.kexecCount ?? 0,
    bootMs: k.bootTimeMs,
    luo: luo ? { enabled: luo.enabled, deviceRegistered: luo.deviceRegistered, deviceOpen: luo.isOpen, handlers: luo.fileHandlers.map((h) => h.compatible) } : null,
    sessions: {
      outgoing: luo?.enabled ? luo.sessions.outgoing.map((s) => ({ name: s.name, files: fileViews(s) })) : [],
      incoming: luo?.enabled ? luo.sessions.incoming.map((s) => ({ name: s.name, retrieved: s.retrieved, files: fileViews(s) })) : [],
    },
    subsystems: luo?.enabled ? { state: luo.subsystems.state, registered: luo.subsystems.names, incoming: Object.fromEntries([...luo.subsystems.incomingData].map(([n, v]) => [n, hex(v)])) } : null,
    flbs: luo?.enabled ? luo.flbs.views.map(flbViewJson) : [],
    kho: khoView(k),
    memory: memoryView(m, opts),
    log: k.log.lines.slice(-LOG_LINES).map((l) => KernelLog.format(l)),
  };
}
