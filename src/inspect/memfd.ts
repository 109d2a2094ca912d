/**
 * memfd-v2 / memfd-v1 descriptors (mm/memfd_luo.c, abi/memfd.h): struct memfd_luo_ser, its
 * kho_vmalloc chunk list and the memfd_luo_folio_ser array, checked as retrieve would (seals, vm
 * flags, chunk counts, folio indexes within size, every page preserved) and more.
 */
import { KHO_VMALLOC_CHUNK_ENTRIES, KHO_VMALLOC_FLAG_HUGE_VMAP, KHO_VMALLOC_FLAG_VM_ALLOC, PAGE_SIZE } from '../abi/kho.ts';
import { MEMFD_FOLIO_PFN_BITS, MemfdLuoFolioSer, MemfdLuoSer, MemfdLuoSerV1 } from '../abi/luo.ts';
import { MEMFD_LUO_ALL_SEALS } from '../handlers/memfd.ts';
import { MAX_PAGE_ORDER } from '../kho/kho.ts';
import type { Ctx } from './context.ts';
import { PhysError, type PhysView, le64 } from './phys.ts';
import { type FolioInfo, type MemfdInfo, type VmallocChunkInfo, hex } from './report.ts';

/** Folio entries decoded at most (a 64 MiB array); the rest are counted as a problem. */
const MAX_FOLIOS = 1 << 22;
const MAX_CHUNKS = 1 << 16;
const MAX_FOLIO_PROBLEMS = 32;
const PFN_MASK = (1n << MEMFD_FOLIO_PFN_BITS) - 1n;
const SEAL_NAMES: [number, string][] = [[1, 'SEAL'], [2, 'SHRINK'], [4, 'GROW'], [8, 'WRITE'], [0x10, 'FUTURE_WRITE'], [0x20, 'EXEC']];

export const sealNames = (s: number): string => SEAL_NAMES.filter(([b]) => s & b).map(([, n]) => n).join('|') || '0';
export const folioFlagNames = (f: number): string => [f & 1 ? 'DIRTY' : '', f & 2 ? 'UPTODATE' : ''].filter(Boolean).join('|') || '0';

const toHex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex');

export interface MemfdOptions {
  /** Bytes of each folio's data to include (0: none). */
  contents: number;
}

/** Decodes the descriptor at `data` for handler `compat`; problems are reported at `where`. */
export function decodeMemfd(ctx: Ctx, data: bigint, compat: 'memfd-v2' | 'memfd-v1', where: string, opts: MemfdOptions): MemfdInfo | undefined {
  const v2 = compat === 'memfd-v2';
  const layout = v2 ? MemfdLuoSer : MemfdLuoSerV1;
  const w = `${where} memfd_luo_ser @${hex(data)}`;
  if (data === 0n) { ctx.problems.error(where, 'data is 0: no memfd_luo_ser'); return undefined; }
  const raw = ctx.read(data, layout.size, where, 'data (memfd_luo_ser)');
  if (!raw) return undefined;
  if (!ctx.claim(data, `the memfd_luo_ser of ${where}`, w)) return undefined;
  ctx.checkPreserved(data, layout.size, w, 'memfd_luo_ser');
  const s = v2 ? MemfdLuoSer.decode(raw) : { ...MemfdLuoSerV1.decode(raw), seals: undefined, flags: undefined };
  const info: MemfdInfo = {
    version: compat, pos: s.pos, size: s.size,
    ...(s.seals !== undefined ? { seals: s.seals } : {}), ...(s.flags !== undefined ? { flags: s.flags } : {}),
    nrFolios: s.nr_folios,
    folios: { first: s.folios_first, totalPages: s.folios_total_pages, flags: s.folios_flags, order: s.folios_order },
    chunks: [], folioList: [],
  };
  if (s.seals !== undefined && (s.seals & ~MEMFD_LUO_ALL_SEALS) !== 0) ctx.problems.error(w, `seals ${hex(s.seals)} include bits outside the supported set ${hex(MEMFD_LUO_ALL_SEALS)} (EOPNOTSUPP)`);
  if (s.flags) ctx.problems.warn(w, `flags ${hex(s.flags)} should be 0`);
  const sizePages = (s.size + BigInt(PAGE_SIZE) - 1n) / BigInt(PAGE_SIZE);
  if (s.nr_folios > sizePages) ctx.problems.error(w, `nr_folios ${s.nr_folios} is more than the ${sizePages} page(s) of size ${s.size}`);
  if (s.nr_folios === 0n) {
    if (s.folios_first !== 0n || s.folios_total_pages !== 0) ctx.problems.warn(w, `nr_folios is 0 but the folios descriptor is not empty (first ${hex(s.folios_first)}, total_pages ${s.folios_total_pages})`);
    return info;
  }
  const array = readVmalloc(ctx, info, w);
  if (!array) return info;
  let nr = Number(s.nr_folios > BigInt(MAX_FOLIOS) ? BigInt(MAX_FOLIOS) : s.nr_folios);
  if (BigInt(nr) < s.nr_folios) ctx.problems.error(w, `nr_folios ${s.nr_folios} is more than the ${MAX_FOLIOS} decoded`);
  if (array.length < nr * MemfdLuoFolioSer.size) {
    ctx.problems.error(w, `folio array holds ${Math.floor(array.length / MemfdLuoFolioSer.size)} entries, nr_folios is ${s.nr_folios}`);
    nr = Math.floor(array.length / MemfdLuoFolioSer.size);
  }
  const indexes = new Map<bigint, number>();
  // A garbage array would list a problem per entry: show the first few, count the rest.
  const listed = ctx.problems.list.length;
  if (!ctx.spend(where, nr)) return info;
  for (let i = 0; i < nr; i++) {
    if (ctx.problems.list.length - listed > MAX_FOLIO_PROBLEMS) {
      ctx.problems.error(where, `folios ${i}..${nr - 1} not checked: too many problems in the folio array (is it one?)`);
      break;
    }
    const e = MemfdLuoFolioSer.decode(array, i * MemfdLuoFolioSer.size);
    const f: FolioInfo = { index: e.index, pfn: e.pfn_flags & PFN_MASK, flags: Number(e.pfn_flags >> MEMFD_FOLIO_PFN_BITS) };
    const fw = `${where} folio ${i}`;
    const pa = f.pfn * BigInt(PAGE_SIZE);
    if (f.flags & ~3) ctx.problems.warn(fw, `flags ${hex(f.flags)} has bits other than DIRTY|UPTODATE`);
    if (f.index * BigInt(PAGE_SIZE) >= s.size) ctx.problems.error(fw, `index ${f.index} is beyond the file: page offset ${hex(f.index * BigInt(PAGE_SIZE))} >= size ${s.size}`);
    const dup = indexes.get(f.index);
    if (dup !== undefined) ctx.problems.error(fw, `index ${f.index} repeats folio ${dup}'s`);
    else indexes.set(f.index, i);
    ctx.checkPreserved(pa, PAGE_SIZE, fw, 'folio');
    ctx.claim(pa, `folio ${i} of ${where}`, fw);
    if (!ctx.lone && !ctx.view.has(pa, PAGE_SIZE)) ctx.problems.warn(fw, `folio page ${hex(pa)} (pfn ${hex(f.pfn)}) is not in the memory view`);
    else if (opts.contents > 0) {
      try { f.firstBytes = toHex(ctx.view.read(pa, Math.min(opts.contents, PAGE_SIZE))); } catch { /* reported above */ }
    }
    info.folioList.push(f);
  }
  return info;
}

/** Follows the kho_vmalloc chunk list and returns the array bytes (total_pages pages), or undefined. */
function readVmalloc(ctx: Ctx, info: MemfdInfo, w: string): Uint8Array | undefined {
  const d = info.folios;
  const vw = `${w} folios (kho_vmalloc)`;
  const ok = KHO_VMALLOC_FLAG_VM_ALLOC | KHO_VMALLOC_FLAG_HUGE_VMAP;
  if (d.flags & ~ok || !(d.flags & KHO_VMALLOC_FLAG_VM_ALLOC)) ctx.problems.error(vw, `flags ${hex(d.flags)}: only VM_ALLOC (1) and VM_ALLOW_HUGE_VMAP (2) are known, VM_ALLOC required (EOPNOTSUPP)`);
  if (d.order > MAX_PAGE_ORDER) { ctx.problems.error(vw, `order ${d.order} is above MAX_PAGE_ORDER ${MAX_PAGE_ORDER}`); return undefined; }
  const need = Number(info.nrFolios) * MemfdLuoFolioSer.size;
  if (d.totalPages * PAGE_SIZE < Math.min(need, MAX_FOLIOS * MemfdLuoFolioSer.size)) ctx.problems.error(vw, `total_pages ${d.totalPages} cannot hold ${info.nrFolios} folio entries`);
  if (d.first === 0n) { ctx.problems.error(vw, 'first chunk is 0 but nr_folios is not'); return undefined; }
  const runPages = 2 ** d.order;
  const runs: bigint[] = [];
  const seen = new Set<bigint>();
  const maxRuns = Math.ceil(d.totalPages / runPages);
  for (let pa = d.first, n = 0; pa !== 0n; n++) {
    const cw = `${w} vmalloc chunk ${n} @${hex(pa)}`;
    if (pa % BigInt(PAGE_SIZE) !== 0n) { ctx.problems.error(cw, 'chunk address is not page aligned'); break; }
    if (seen.has(pa)) { ctx.problems.error(cw, 'visited twice: the chunk list loops'); break; }
    if (n >= MAX_CHUNKS) { ctx.problems.error(cw, `more than ${MAX_CHUNKS} chunks`); break; }
    seen.add(pa);
    if (!ctx.spend(cw)) return undefined;
    const page = ctx.read(pa, PAGE_SIZE, cw, n ? 'next' : 'first');
    if (!page) return undefined;
    if (!ctx.claim(pa, `vmalloc chunk ${n} of ${w}`, cw)) return undefined;
    ctx.checkPreserved(pa, PAGE_SIZE, cw, 'vmalloc chunk');
    const chunk: VmallocChunkInfo = { pa, next: le64(page, 0), runs: [] };
    for (let i = 0; i < KHO_VMALLOC_CHUNK_ENTRIES; i++) {
      const r = le64(page, 8 + i * 8);
      if (r === 0n) break;
      chunk.runs.push(r);
      if (r % (BigInt(PAGE_SIZE) << BigInt(d.order)) !== 0n) ctx.problems.error(cw, `entry ${i}: ${hex(r)} is not aligned to order ${d.order}`);
      ctx.checkPreserved(r, runPages * PAGE_SIZE, `${cw} entry ${i}`, 'vmalloc page');
      ctx.claim(r, `a vmalloc page of ${w}`, `${cw} entry ${i}`);
      runs.push(r);
    }
    info.chunks.push(chunk);
    if (runs.length > maxRuns) break;
    pa = chunk.next;
  }
  if (runs.length * runPages !== d.totalPages) ctx.problems.error(vw, `the chunks list ${runs.length * runPages} page(s), total_pages is ${d.totalPages}`);
  // Only what is actually read is allocated: a corrupt nr_folios cannot make this huge.
  const want = Math.min(need, MAX_FOLIOS * MemfdLuoFolioSer.size);
  const parts: Uint8Array[] = [];
  let got = 0;
  for (let i = 0; got < want && i < runs.length; i++) {
    const n = Math.min(runPages * PAGE_SIZE, want - got);
    const b = ctx.read(runs[i]!, n, `${vw} page ${i}`, 'vmalloc page');
    if (!b) break;
    parts.push(b);
    got += n;
  }
  const out = new Uint8Array(got);
  let pos = 0;
  for (const p of parts) { out.set(p, pos); pos += p.length; }
  return out;
}

/**
 * The file's bytes [0, size) rebuilt from its folios (pages without a folio read as zeros), as
 * retrieve would present them. `orderOf` gives a folio's order (from the tracker); default 0.
 */
export function memfdData(view: PhysView, m: MemfdInfo, orderOf: (pfn: number) => number | undefined = () => 0, max = 64 << 20): Uint8Array {
  if (m.size > BigInt(max)) throw new PhysError(0n, max, `memfd of ${m.size} bytes is larger than ${max}`);
  const size = Number(m.size);
  const out = new Uint8Array(size);
  for (const f of m.folioList) {
    const pages = 2 ** (orderOf(Number(f.pfn)) ?? 0);
    for (let p = 0; p < pages; p++) {
      const off = (Number(f.index) + p) * PAGE_SIZE;
      if (off >= size) break;
      const n = Math.min(PAGE_SIZE, size - off);
      out.set(view.read((f.pfn + BigInt(p)) * BigInt(PAGE_SIZE), n), off);
    }
  }
  return out;
}
