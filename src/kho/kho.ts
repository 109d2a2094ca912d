/**
 * Kexec HandOver for one running kernel: the outgoing side (preserve/unpreserve folios, page
 * ranges and vmalloc areas; the preserving allocator; named subtrees in a root FDT kept at a
 * stable address and edited in place; kho-v1's re-entrant finalize) and the incoming side (the
 * root found at boot, its tracker walked and checked, restore guarded by the per-block 'KHOP'
 * magic). Mirrors kernel/liveupdate/kexec_handover.c; profiles kho-v4 (default) and kho-v1.
 */
import { LuoError } from '../errno.ts';
import {
  KEXEC_METADATA_NAME,
  KEXEC_METADATA_VERSION,
  KexecMetadata,
  type KhoProfile,
  KHO_VMALLOC_CHUNK_ENTRIES,
  PAGE_SIZE,
} from '../abi/kho.ts';
import { BitmapTracker } from './bitmap-v1.ts';
import { type KhoAllocator, type KhoMemory, readPhysBytes } from './memory.ts';
import { RadixTracker } from './radix.ts';
import { PageStamps } from './stamps.ts';
import {
  addSubtreeNode,
  buildRootFdt,
  type IncomingRoot,
  readMemoryMap,
  removeSubtreeNode,
  setMemoryMap,
  subtreeOf,
} from './root-fdt.ts';
import {
  KHO_VMALLOC_SUPPORTED_FLAGS,
  VM_ALLOC,
  VM_ALLOW_HUGE_VMAP,
  type VmArea,
  paToPfn,
  pfnToPa,
  readVmallocChunk,
  writeVmallocChunk,
} from './vmalloc.ts';

/** MAX_PAGE_ORDER of the simulated kernel (include/linux/mmzone.h default). */
export const MAX_PAGE_ORDER = 10;

/** A KHO scratch area, as in struct kho_scratch. */
export interface ScratchArea {
  readonly addr: bigint;
  readonly size: bigint;
}

export type KhoLog = (level: 'info' | 'warn' | 'err', msg: string) => void;

export interface KhoOptions {
  readonly profile: KhoProfile;
  /** The root compatible string (default: the profile's own; a release may write a composite one). */
  readonly compatible?: string;
  readonly scratch: readonly ScratchArea[];
  /** The release string written into kexec-metadata (uname -r). */
  readonly release: string;
  readonly ramPages: number;
  readonly log?: KhoLog;
}

/** What the previous kernel handed over, after validation. */
export interface KhoIncoming {
  readonly root: IncomingRoot;
  readonly fdtPa: bigint;
  readonly scratchPa: bigint;
  readonly previousRelease?: string;
  /** kexec_count as read from the incoming kexec-metadata (0 when absent). */
  readonly kexecCount: number;
  readonly blocks: number;
}

const key = (pfn: number, order: number): number => pfn * 64 + order;

/** Chunks of a page range, as kho_preserve_pages splits it: largest naturally aligned powers of two. */
export function pageRangeChunks(startPfn: number, nrPages: number): Array<{ pfn: number; order: number }> {
  const out: Array<{ pfn: number; order: number }> = [];
  const end = startPfn + nrPages;
  let pfn = startPfn;
  while (pfn < end) {
    let order = Math.floor(Math.log2(end - pfn));
    while (2 ** order > end - pfn) order--;
    while (order > 0 && pfn % 2 ** order !== 0) order--;
    out.push({ pfn, order });
    pfn += 2 ** order;
  }
  return out;
}

export class Kho {
  readonly profile: KhoProfile;
  private readonly tracker: RadixTracker | BitmapTracker;
  /** Preserved blocks by key (pfn * 64 + order): the kernel's tracker plus our accounting. */
  private readonly preserved = new Map<number, number>();
  private preservedPageCount = 0;
  readonly fdtPfn: number;
  private readonly subtrees = new Map<string, { pa: bigint; size: number }>();
  private finalizedFlag = false;
  /** Size of out/fdt in debugfs: fixed when the file is created (kernel behaviour, see README). */
  private debugfsFdtSize = 0;
  /** struct page private words stamped by the incoming walk: pfn -> order ('KHOP' magic). */
  private readonly magic: PageStamps;
  incoming: KhoIncoming | undefined;
  private metadataPa = 0n;
  private readonly log: KhoLog;

  constructor(private readonly mem: KhoMemory, private readonly alloc: KhoAllocator, private readonly opts: KhoOptions, incoming?: {
    readonly root: IncomingRoot; readonly fdtPa: bigint; readonly scratchPa: bigint; readonly magic: PageStamps; readonly blocks: number;
  }) {
    this.profile = opts.profile;
    this.log = opts.log ?? (() => {});
    this.magic = incoming?.magic ?? PageStamps.empty();
    if (incoming) {
      this.incoming = { root: incoming.root, fdtPa: incoming.fdtPa, scratchPa: incoming.scratchPa, kexecCount: 0, blocks: incoming.blocks };
    }
    // kho_init (fs_initcall): tracker root (radix from kho-v2), the root FDT page, then kexec-metadata (kho-v3 on).
    this.tracker = this.profile === 'kho-v1' ? new BitmapTracker(mem, alloc) : new RadixTracker(mem, alloc);
    this.fdtPfn = paToPfn(this.allocPreserve(PAGE_SIZE));
    buildRootFdt(this.mem.page(this.fdtPfn), this.profile, this.tracker instanceof RadixTracker ? this.tracker.rootPa : 0n, opts.compatible);
    if (this.profile === 'kho-v4') this.initKexecMetadata();
    this.debugfsFdtSize = this.fdtTotalSize();
  }

  // ---------------------------------------------------------------- outgoing: preservation

  private checkScratch(pfn: number, pages: number, what: string): void {
    const start = pfnToPa(pfn);
    const end = start + BigInt(pages) * BigInt(PAGE_SIZE);
    for (const [i, s] of this.opts.scratch.entries()) {
      if (s.size > 0n && start < s.addr + s.size && end > s.addr) {
        throw new LuoError('EINVAL', `${what} 0x${start.toString(16)}+0x${(end - start).toString(16)} overlaps KHO scratch area ${i}`);
      }
    }
  }

  private track(pfn: number, order: number): void {
    this.tracker.add(pfn, order);
    const k = key(pfn, order);
    if (!this.preserved.has(k)) this.preservedPageCount += 2 ** order;
    this.preserved.set(k, order);
  }

  private untrack(pfn: number, order: number, what: string): void {
    const k = key(pfn, order);
    if (!this.preserved.has(k)) {
      this.log('warn', `${what}: 0x${pfnToPa(pfn).toString(16)} order ${order} was not preserved`);
      return;
    }
    this.tracker.del(pfn, order);
    this.preserved.delete(k);
    this.preservedPageCount -= 2 ** order;
  }

  /** kho_preserve_folio: EINVAL if the folio overlaps a scratch area. */
  preserveFolio(pa: bigint, order: number): void {
    const pfn = this.pfnOf(pa, order, 'kho_preserve_folio');
    this.checkScratch(pfn, 2 ** order, 'folio');
    this.track(pfn, order);
  }

  unpreserveFolio(pa: bigint, order: number): void {
    this.untrack(this.pfnOf(pa, order, 'kho_unpreserve_folio'), order, 'kho_unpreserve_folio');
  }

  /** kho_preserve_pages: the range is split into aligned power-of-two chunks, one key each. */
  preservePages(pa: bigint, nrPages: number): void {
    const pfn = this.pfnOf(pa, 0, 'kho_preserve_pages');
    if (!Number.isInteger(nrPages) || nrPages <= 0) throw new LuoError('EINVAL', `kho_preserve_pages: ${nrPages} pages`);
    this.checkScratch(pfn, nrPages, 'page range');
    const done: Array<{ pfn: number; order: number }> = [];
    try {
      for (const c of pageRangeChunks(pfn, nrPages)) {
        this.track(c.pfn, c.order);
        done.push(c);
      }
    } catch (e) {
      for (const c of done) this.untrack(c.pfn, c.order, 'rollback');
      throw e;
    }
  }

  unpreservePages(pa: bigint, nrPages: number): void {
    for (const c of pageRangeChunks(this.pfnOf(pa, 0, 'kho_unpreserve_pages'), nrPages)) this.untrack(c.pfn, c.order, 'kho_unpreserve_pages');
  }

  /** kho_preserve_vmalloc: returns the 16-byte kho_vmalloc descriptor's fields. */
  preserveVmalloc(area: VmArea): { first: bigint; total_pages: number; flags: number; order: number } {
    if (area.vmFlags & ~KHO_VMALLOC_SUPPORTED_FLAGS) throw new LuoError('EOPNOTSUPP', `vmalloc flags 0x${area.vmFlags.toString(16)} are not supported by KHO`);
    const flags = (area.vmFlags & VM_ALLOC ? 1 : 0) | (area.vmFlags & VM_ALLOW_HUGE_VMAP ? 2 : 0);
    const chunks: number[] = [];
    const runsDone: number[] = [];
    const newChunk = (): number => {
      const pfn = this.alloc.allocFolio(0);
      this.mem.page(pfn).fill(0);
      chunks.push(pfn);
      try {
        this.preservePages(pfnToPa(pfn), 1);
      } catch (e) {
        chunks.pop();
        this.alloc.freeFolio(pfn, 0);
        throw e;
      }
      return pfn;
    };
    try {
      const runPa = area.runs.map(pfnToPa);
      newChunk();
      for (let i = 0; i < area.runs.length; i += KHO_VMALLOC_CHUNK_ENTRIES) {
        if (i > 0) newChunk();
        const part = runPa.slice(i, i + KHO_VMALLOC_CHUNK_ENTRIES);
        for (const [j, pa] of part.entries()) {
          this.preservePages(pa, 2 ** area.order);
          runsDone.push(area.runs[i + j]!);
        }
      }
      // The kernel opens a fresh chunk as soon as one fills; mirror that for exact page usage.
      if (area.runs.length > 0 && area.runs.length % KHO_VMALLOC_CHUNK_ENTRIES === 0) newChunk();
      for (let c = 0; c < chunks.length; c++) {
        const part = runPa.slice(c * KHO_VMALLOC_CHUNK_ENTRIES, (c + 1) * KHO_VMALLOC_CHUNK_ENTRIES);
        writeVmallocChunk(this.mem.page(chunks[c]!), c + 1 < chunks.length ? pfnToPa(chunks[c + 1]!) : 0n, part);
      }
    } catch (e) {
      for (const r of runsDone) this.unpreservePages(pfnToPa(r), 2 ** area.order);
      for (const c of chunks) {
        this.unpreservePages(pfnToPa(c), 1);
        this.alloc.freeFolio(c, 0);
      }
      throw e;
    }
    return { first: pfnToPa(chunks[0]!), total_pages: area.nrPages, flags, order: area.order };
  }

  /** kho_unpreserve_vmalloc: unpreserves the runs and frees the chunk pages. */
  unpreserveVmalloc(desc: { first: bigint; order: number }): void {
    let pa = desc.first;
    const seen = new Set<bigint>();
    while (pa !== 0n && !seen.has(pa)) {
      seen.add(pa);
      const pfn = paToPfn(pa);
      const { next, runs } = readVmallocChunk(this.mem.page(pfn));
      this.unpreservePages(pa, 1);
      for (const r of runs) this.unpreservePages(r, 2 ** desc.order);
      this.alloc.freeFolio(pfn, 0);
      pa = next;
    }
  }

  /** kho_alloc_preserve: a zeroed, preserved folio of get_order(size). */
  allocPreserve(size: number): bigint {
    if (size <= 0) throw new LuoError('EINVAL', 'kho_alloc_preserve: size 0');
    const order = Math.max(0, Math.ceil(Math.log2(Math.ceil(size / PAGE_SIZE))));
    if (order > MAX_PAGE_ORDER) throw new LuoError('E2BIG', `kho_alloc_preserve: ${size} bytes needs order ${order} > MAX_PAGE_ORDER`);
    const pfn = this.alloc.allocFolio(order);
    for (let i = 0; i < 2 ** order; i++) this.mem.page(pfn + i).fill(0);
    try {
      this.preserveFolio(pfnToPa(pfn), order);
    } catch (e) {
      this.alloc.freeFolio(pfn, order);
      throw e;
    }
    return pfnToPa(pfn);
  }

  /** kho_unpreserve_free: undo allocPreserve in the same kernel. */
  unpreserveFree(pa: bigint): void {
    const pfn = paToPfn(pa);
    const order = this.orderOfPreserved(pfn);
    if (order === undefined) throw new LuoError('EINVAL', `kho_unpreserve_free: 0x${pa.toString(16)} is not a preserved allocation`);
    this.untrack(pfn, order, 'kho_unpreserve_free');
    this.alloc.freeFolio(pfn, order);
  }

  private orderOfPreserved(pfn: number): number | undefined {
    for (let o = 0; o <= MAX_PAGE_ORDER; o++) if (this.preserved.has(key(pfn, o))) return o;
    return undefined;
  }

  isPreserved(pa: bigint, order: number): boolean {
    return this.preserved.has(key(paToPfn(pa), order));
  }

  private pfnOf(pa: bigint, order: number, what: string): number {
    if (pa < 0n || pa % (BigInt(PAGE_SIZE) << BigInt(order)) !== 0n) throw new LuoError('EINVAL', `${what}: 0x${pa.toString(16)} is not aligned to order ${order}`);
    const pfn = paToPfn(pa);
    if (pfn + 2 ** order > this.opts.ramPages) throw new LuoError('EINVAL', `${what}: 0x${pa.toString(16)} order ${order} is outside RAM`);
    return pfn;
  }

  // ---------------------------------------------------------------- outgoing: subtrees

  /** kho_add_subtree: EEXIST for a name already present; the root FDT is edited in place. */
  addSubtree(name: string, pa: bigint, size: number): void {
    addSubtreeNode(this.mem.page(this.fdtPfn), this.profile, name, pa, size);
    this.subtrees.set(name, { pa, size });
  }

  /** kho_remove_subtree: removes the node whose data address equals `pa` (no error if none). */
  removeSubtree(pa: bigint): void {
    removeSubtreeNode(this.mem.page(this.fdtPfn), this.profile, pa);
    for (const [n, s] of this.subtrees) if (s.pa === pa) this.subtrees.delete(n);
  }

  get rootFdtPa(): bigint {
    return pfnToPa(this.fdtPfn);
  }

  fdtTotalSize(): number {
    return new DataView(this.mem.page(this.fdtPfn).buffer, this.mem.page(this.fdtPfn).byteOffset).getUint32(4, false);
  }

  /** The root FDT bytes (its totalsize). */
  rootFdt(): Uint8Array {
    return this.mem.page(this.fdtPfn).slice(0, this.fdtTotalSize());
  }

  // ---------------------------------------------------------------- kho-v1 finalize

  /**
   * kho-v1 only: serialize the bitmaps into chunks and store their address in the root FDT.
   * Re-entrant: a second call discards the previous chunks and builds fresh ones.
   */
  finalize(): void {
    if (!(this.tracker instanceof BitmapTracker)) throw new LuoError('EOPNOTSUPP', `${this.profile} has no finalize step`);
    const first = this.tracker.serialize();
    setMemoryMap(this.mem.page(this.fdtPfn), first);
    this.finalizedFlag = true;
  }

  get finalized(): boolean {
    return this.finalizedFlag;
  }

  /** What the kexec must carry besides preserved memory: the tracker's own pages. */
  metadataPfns(): number[] {
    return this.tracker.pages();
  }

  memoryMapPa(): bigint {
    return readMemoryMap(this.mem.page(this.fdtPfn));
  }

  /** Preserved blocks in the order the next kernel will see them. */
  walkPreserved(cb: (pfn: number, order: number) => void): void {
    this.tracker.walk(cb);
  }

  /**
   * Every preserved block and tracker page as a pfn range, ascending by pfn: one typed-array sort
   * of the keys (pfn * 64 + order) instead of an array of pairs and a comparator.
   */
  sortedBlockRanges(): { starts: Float64Array; ends: Float64Array } {
    const meta = this.metadataPfns();
    const keys = new Float64Array(this.preserved.size + meta.length);
    let i = 0;
    for (const k of this.preserved.keys()) keys[i++] = k;
    for (const pfn of meta) keys[i++] = key(pfn, 0);
    keys.sort();
    const starts = new Float64Array(keys.length);
    const ends = new Float64Array(keys.length);
    for (let j = 0; j < keys.length; j++) {
      const order = keys[j]! % 64;
      starts[j] = (keys[j]! - order) / 64;
      ends[j] = starts[j]! + 2 ** order;
    }
    return { starts, ends };
  }

  /** Every block preserved in this kernel, from luo's own accounting (unordered). */
  forEachPreservedBlock(cb: (pfn: number, order: number) => void): void {
    for (const [k, order] of this.preserved) cb((k - order) / 64, order);
  }

  get preservedPages(): number {
    return this.preservedPageCount;
  }

  get preservedBlocks(): number {
    return this.preserved.size;
  }

  preservedByOrder(): Map<number, number> {
    const m = new Map<number, number>();
    for (const o of this.preserved.values()) m.set(o, (m.get(o) ?? 0) + 1);
    return m;
  }

  get trackerPages(): number {
    return this.tracker.nodeCount;
  }

  outgoingSubtrees(): ReadonlyMap<string, { pa: bigint; size: number }> {
    return this.subtrees;
  }

  // ---------------------------------------------------------------- kexec-metadata

  private initKexecMetadata(): void {
    if (this.incoming) this.readIncomingMetadata();
    const pa = this.allocPreserve(KexecMetadata.size);
    const page = this.mem.page(paToPfn(pa));
    KexecMetadata.encode({ version: KEXEC_METADATA_VERSION, previous_release: this.opts.release, kexec_count: (this.incoming?.kexecCount ?? 0) + 1 }, page);
    try {
      this.addSubtree(KEXEC_METADATA_NAME, pa, KexecMetadata.size);
    } catch (e) {
      this.unpreserveFree(pa);
      this.log('warn', `failed to initialize kexec-metadata subtree: ${String(e)}`);
      return;
    }
    this.metadataPa = pa;
  }

  private readIncomingMetadata(): void {
    let sub;
    try {
      sub = this.retrieveSubtree(KEXEC_METADATA_NAME);
    } catch (e) {
      // absent (the previous kernel did not export metadata) is fine; broken is worth a warning
      if (e instanceof LuoError && e.errno !== 'ENOENT') this.log('warn', `kexec-metadata: ${e.message}; ignored`);
      return;
    }
    if (sub.size < 4) return this.log('warn', `kexec-metadata blob too small (${sub.size} bytes)`);
    // Reads stay inside the blob (retrieveSubtree checked it lies in preserved RAM).
    const blob = readPhysBytes(this.mem, sub.pa, Math.min(sub.size, KexecMetadata.size));
    const version = new DataView(blob.buffer, blob.byteOffset).getUint32(0, true);
    if (version !== KEXEC_METADATA_VERSION) return this.log('warn', `kexec-metadata version ${version} not supported (expected ${KEXEC_METADATA_VERSION})`);
    if (sub.size < KexecMetadata.size) return this.log('warn', `kexec-metadata blob too small for v1 (${sub.size} < ${KexecMetadata.size})`);
    const md = KexecMetadata.decode(blob);
    this.incoming = { ...this.incoming!, previousRelease: md.previous_release, kexecCount: md.kexec_count };
    this.log('info', `exec from: ${md.previous_release} (count ${md.kexec_count})`);
  }

  get kexecMetadataPa(): bigint {
    return this.metadataPa;
  }

  // ---------------------------------------------------------------- incoming

  /**
   * kho_retrieve_subtree: ENOENT on a cold boot or for a missing node, EINVAL for a broken one.
   * The kernel trusts the blob's address and size; luo also checks (a deliberate difference) that
   * the whole blob lies inside RAM and inside memory the previous kernel preserved, so readers that
   * stay within the size never touch anything else.
   */
  retrieveSubtree(name: string): { pa: bigint; size: number } {
    if (!this.incoming) throw new LuoError('ENOENT', `kho_retrieve_subtree(${name}): not a KHO boot`);
    const sub = subtreeOf(this.incoming.root, name, this.profile);
    const end = sub.pa + BigInt(sub.size);
    if (sub.pa < 0n || end > BigInt(this.opts.ramPages) << 12n) {
      throw new LuoError('EINVAL', `KHO subtree "${name}": blob 0x${sub.pa.toString(16)}+${sub.size} is not inside RAM`);
    }
    // block by block (a hostile blob-size over preserved memory costs one step per block)
    for (let pfn = Number(sub.pa >> 12n); sub.size > 0 && pfn <= Number((end - 1n) >> 12n);) {
      const next = this.magic.blockEnd(pfn);
      if (next === undefined) {
        throw new LuoError('EINVAL', `KHO subtree "${name}": blob 0x${sub.pa.toString(16)}+${sub.size} reaches page 0x${(BigInt(pfn) << 12n).toString(16)}, which the previous kernel did not preserve`);
      }
      pfn = next;
    }
    return sub;
  }

  isKhoBoot(): boolean {
    return this.incoming !== undefined;
  }

  /** kho_restore_folio: the order stamped at boot, or null (with a warning) if none. */
  restoreFolio(pa: bigint): { pfn: number; order: number } | null {
    if (pa % BigInt(PAGE_SIZE) !== 0n) {
      this.log('warn', `kho_restore_folio: 0x${pa.toString(16)} carries no KHO magic (never preserved, or already restored)`);
      return null;
    }
    return this.restoreFolioPfn(paToPfn(pa));
  }

  /** kho_restore_folio of the page-aligned address of `pfn` (callers that hold pfns: no BigInt on the way). */
  restoreFolioPfn(pfn: number): { pfn: number; order: number } | null {
    const order = this.restoreFolioOrder(pfn);
    return order < 0 ? null : { pfn, order };
  }

  /** kho_restore_folio by pfn, answering the folio's order or -1 (no object per folio: memfd retrieve). */
  restoreFolioOrder(pfn: number): number {
    const order = this.magic.take(pfn);
    if (order === undefined) {
      this.log('warn', `kho_restore_folio: 0x${pfnToPa(pfn).toString(16)} carries no KHO magic (never preserved, or already restored)`);
      return -1;
    }
    if (order <= MAX_PAGE_ORDER) this.alloc.adoptFolio?.(pfn, order);
    else this.alloc.adoptPages?.(pfn, 2 ** order);
    return order;
  }

  /** kho_restore_pages: every chunk of the range must carry the magic with the chunk's order. */
  restorePages(pa: bigint, nrPages: number): boolean {
    const chunks = pageRangeChunks(paToPfn(pa), nrPages);
    for (const c of chunks) {
      if (this.magic.get(c.pfn) !== c.order) {
        this.log('warn', `kho_restore_pages: 0x${pfnToPa(c.pfn).toString(16)} order ${c.order} was not preserved like that`);
        return false;
      }
    }
    for (const c of chunks) this.magic.delete(c.pfn);
    this.alloc.adoptPages?.(paToPfn(pa), nrPages);
    return true;
  }

  /** kho_restore_free: restore a kho_alloc_preserve allocation and give it back to the allocator. */
  restoreFree(pa: bigint): void {
    const f = this.restoreFolio(pa);
    if (!f) throw new LuoError('EINVAL', `kho_restore_free: 0x${pa.toString(16)} was not preserved`);
    this.alloc.freeFolio(f.pfn, f.order);
  }

  /** kho_restore_vmalloc: rebuilds the area from its descriptor, or throws naming the problem. */
  restoreVmalloc(desc: { first: bigint; total_pages: number; flags: number; order: number }): VmArea {
    if (desc.flags & ~3) throw new LuoError('EINVAL', `kho_vmalloc flags 0x${desc.flags.toString(16)} unknown`);
    const runPages = 2 ** desc.order;
    const runs: number[] = [];
    let pa = desc.first;
    let guard = 0;
    while (pa !== 0n) {
      if (++guard > desc.total_pages + 2) throw new LuoError('EINVAL', 'kho_restore_vmalloc: chunk list longer than the area (cycle?)');
      const pfn = paToPfn(pa);
      if (pfn >= this.opts.ramPages) throw new LuoError('EINVAL', `kho_restore_vmalloc: chunk 0x${pa.toString(16)} outside RAM`);
      const { next, runs: chunkRuns } = readVmallocChunk(this.mem.page(pfn));
      for (const r of chunkRuns) {
        if ((runs.length + 1) * runPages > desc.total_pages) throw new LuoError('EINVAL', 'kho_restore_vmalloc: more pages than total_pages');
        if (!this.restorePages(r, runPages)) throw new LuoError('EINVAL', `kho_restore_vmalloc: run 0x${r.toString(16)} was not preserved`);
        runs.push(paToPfn(r));
      }
      if (!this.restorePages(pa, 1)) throw new LuoError('EINVAL', `kho_restore_vmalloc: chunk 0x${pa.toString(16)} was not preserved`);
      this.alloc.freePages?.(pfn, 1);
      pa = next;
    }
    if (runs.length * runPages !== desc.total_pages) throw new LuoError('EINVAL', `kho_restore_vmalloc: found ${runs.length * runPages} pages, descriptor says ${desc.total_pages}`);
    return { runs, order: desc.order, nrPages: desc.total_pages, vmFlags: (desc.flags & 1 ? VM_ALLOC : 0) | (desc.flags & 2 ? VM_ALLOW_HUGE_VMAP : 0) };
  }

  /** Blocks stamped at boot and not restored yet (leaked or still owned by their subsystem). */
  get unrestoredBlocks(): number {
    return this.magic.size;
  }

  // ---------------------------------------------------------------- debugfs

  /** /sys/kernel/debug/kho as files: path -> bytes (§6.9). */
  debugfs(): Map<string, Uint8Array> {
    const files = new Map<string, Uint8Array>();
    const enc = new TextEncoder();
    const v1 = this.profile === 'kho-v1';
    if (!v1 || this.finalizedFlag) files.set('out/fdt', this.mem.page(this.fdtPfn).slice(0, v1 ? this.fdtTotalSize() : this.debugfsFdtSize));
    if (v1) files.set('out/finalize', enc.encode(this.finalizedFlag ? '1\n' : '0\n'));
    files.set('out/scratch_phys', enc.encode(this.opts.scratch.map((s) => `0x${s.addr.toString(16)}\n`).join('')));
    files.set('out/scratch_len', enc.encode(this.opts.scratch.map((s) => `0x${s.size.toString(16)}\n`).join('')));
    for (const [name, s] of this.subtrees) files.set(`out/sub_fdts/${name}`, readPhysBytes(this.mem, s.pa, s.size));
    if (this.incoming) {
      files.set('in/fdt', this.incoming.root.blob.slice());
      for (const name of this.incoming.root.subtreeNames) {
        try {
          const s = subtreeOf(this.incoming.root, name, this.profile);
          files.set(`in/sub_fdts/${name}`, readPhysBytes(this.mem, s.pa, s.size));
        } catch {
          // a broken subnode has no file, as in the kernel
        }
      }
    }
    return files;
  }
}
