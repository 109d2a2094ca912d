/**
 * memfds as memfd_create(2) hands them out: a shmem (or hugetlbfs) inode whose page cache holds
 * folios in the simulated machine's memory, and the open files pointing at it (read/write/lseek,
 * ftruncate, fallocate, file seals). Mirrors mm/memfd.c, mm/shmem.c and fs/read_write.c.
 */
import { LuoError } from '../errno.ts';
import { PAGE_SHIFT, PAGE_SIZE } from '../abi/kho.ts';
import type { KernelFile } from '../luo/file-handler.ts';
import type { KhoAllocator } from '../kho/memory.ts';

// ---------------------------------------------------------------- uAPI constants

/** memfd_create flags (include/uapi/linux/memfd.h). */
export const MFD_CLOEXEC = 0x1;
export const MFD_ALLOW_SEALING = 0x2;
export const MFD_HUGETLB = 0x4;
export const MFD_NOEXEC_SEAL = 0x8;
export const MFD_EXEC = 0x10;
export const MFD_ALL_FLAGS = MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_NOEXEC_SEAL | MFD_EXEC;
export const MFD_HUGE_SHIFT = 26;
export const MFD_HUGE_MASK = 0x3f;
export const MFD_HUGE_2MB = 21 << MFD_HUGE_SHIFT;
export const MFD_HUGE_1GB = 30 << MFD_HUGE_SHIFT;
/** NAME_MAX minus strlen("memfd:"). */
export const MFD_NAME_MAX_LEN = 255 - 6;

/** File seals (include/uapi/linux/fcntl.h). */
export const F_SEAL_SEAL = 0x1;
export const F_SEAL_SHRINK = 0x2;
export const F_SEAL_GROW = 0x4;
export const F_SEAL_WRITE = 0x8;
export const F_SEAL_FUTURE_WRITE = 0x10;
export const F_SEAL_EXEC = 0x20;
export const F_ALL_SEALS = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC;

export const SEEK_SET = 0;
export const SEEK_CUR = 1;
export const SEEK_END = 2;
export const FALLOC_FL_KEEP_SIZE = 0x1;
export const FALLOC_FL_PUNCH_HOLE = 0x2;

/** PMD-sized folios: transparent huge pages in shmem, and the 2 MiB hugetlb page size. */
export const HPAGE_PMD_ORDER = 9;
const HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER;
/**
 * The largest file offset luo can represent. The kernel's is MAX_LFS_FILESIZE (2^63 - 1); offsets
 * here are JavaScript numbers, so the simulated limit is 2^53 - 1 (EFBIG/EINVAL beyond it).
 */
export const MEMFD_MAX_BYTES = Number.MAX_SAFE_INTEGER;

// ---------------------------------------------------------------- context

/** Byte access to physical memory that costs no host memory for pages nobody wrote. */
export interface MemfdMemory {
  read(pa: bigint, len: number): Uint8Array;
  write(pa: bigint, data: Uint8Array): void;
  /** Zeroing whole pages must not give them host storage (PhysicalMemory.zero does not). */
  zero(pa: bigint, len: number): void;
  /** A page's stored bytes to read in place, if it has storage. */
  storedPage(pfn: number): Uint8Array | undefined;
  /** read() into a buffer of the caller's (no copy of its own). */
  readInto(pa: bigint, out: Uint8Array, outOff: number, len: number): void;
}

/** shmem_enabled for the internal shm mount: when page-cache allocations may be PMD folios. */
export type ShmemHuge = 'never' | 'always' | 'within_size';

/** What memfds need from the running kernel. */
export interface MemfdContext {
  readonly mem: MemfdMemory;
  readonly alloc: KhoAllocator;
  /** /sys/kernel/mm/transparent_hugepage/shmem_enabled (kernel default: never). */
  readonly shmemHuge?: ShmemHuge;
  /** vm.memfd_noexec: 0 = MFD_EXEC by default, 1 = MFD_NOEXEC_SEAL by default, 2 = one must be given. */
  readonly noexecScope?: 0 | 1 | 2;
}

// ---------------------------------------------------------------- the inode and its page cache

/** One folio of a page cache: 2^order pages at `pfn`, caching file pages [index, index + 2^order). */
export interface ShmemFolio {
  readonly index: number;
  readonly pfn: number;
  readonly order: number;
  /** False for a fallocated folio nobody wrote (it reads as zeros). */
  uptodate: boolean;
  /** memfd_pin_folios references (LUO holds one per folio while the file is preserved). */
  pins: number;
}

/** How the page cache is being asked for a folio (enum sgp_type in mm/shmem.c). */
type Sgp = 'cache' | 'write' | 'falloc';

const pfnPa = (pfn: number): bigint => BigInt(pfn) << BigInt(PAGE_SHIFT);
const folioBytes = (f: ShmemFolio): number => PAGE_SIZE << f.order;
const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** A shmem or hugetlbfs inode (struct shmem_inode_info / hugetlbfs_inode_info plus i_size). */
export class MemfdInode {
  /** i_size in bytes. */
  size = 0;
  seals = F_SEAL_SEAL;
  /** shmem_file_setup creates S_IRWXUGO; MFD_NOEXEC_SEAL clears the x bits. */
  mode = 0o777;
  /** memfds are unlinked from birth: this is what can_preserve checks. */
  readonly nlink = 0;
  /** SHMEM_F_MAPPING_FROZEN: set while LUO preserves the file. */
  frozen = false;
  /** i_mmap_writable: shared writable mappings (see MemfdFile.mapShared). */
  writableMappings = 0;
  private readonly cache = new Map<number, ShmemFolio>();
  /** Folios cached per block of HPAGE_PMD_NR pages: whether a block is empty is one lookup, not 512. */
  private readonly perBlock = new Map<number, number>();
  private openFiles = 0;
  private releasedFlag = false;

  constructor(private readonly ctx: MemfdContext, readonly name: string, readonly hugetlb: boolean) {}

  get released(): boolean {
    return this.releasedFlag;
  }

  /** The folio caching page `index`, if any. */
  folioAt(index: number): ShmemFolio | undefined {
    const f = this.cache.get(index);
    if (f) return f;
    const head = this.cache.get(index - (index % HPAGE_PMD_NR));
    return head && index < head.index + (1 << head.order) ? head : undefined;
  }

  /** Every folio in index order. */
  folios(): ShmemFolio[] {
    return [...this.cache.values()].sort((a, b) => a.index - b.index);
  }

  /** Pages held by the page cache (shmem's info->alloced). */
  get cachedPages(): number {
    let n = 0;
    for (const f of this.cache.values()) n += 1 << f.order;
    return n;
  }

  private cacheSet(f: ShmemFolio): void {
    this.cache.set(f.index, f);
    const b = Math.floor(f.index / HPAGE_PMD_NR);
    this.perBlock.set(b, (this.perBlock.get(b) ?? 0) + 1);
  }

  private cacheDelete(f: ShmemFolio): void {
    if (!this.cache.delete(f.index)) return;
    const b = Math.floor(f.index / HPAGE_PMD_NR);
    const n = this.perBlock.get(b)! - 1;
    if (n) this.perBlock.set(b, n);
    else this.perBlock.delete(b);
  }

  /** No folio caches a page of [start, start + n): whole blocks by their count, the ends page by page. */
  private rangeEmpty(start: number, n: number): boolean {
    const end = start + n;
    for (let i = start; i < end;) {
      const blockEnd = (Math.floor(i / HPAGE_PMD_NR) + 1) * HPAGE_PMD_NR;
      if (i % HPAGE_PMD_NR === 0 && blockEnd <= end) {
        if (this.perBlock.has(i / HPAGE_PMD_NR)) return false;
        i = blockEnd;
      } else {
        if (this.folioAt(i)) return false;
        i++;
      }
    }
    return true;
  }

  /** shmem_huge_global_enabled, then shmem_alloc_and_add_folio with the small-folio fallback. */
  private allocate(index: number, writeEnd: number): ShmemFolio {
    const head = index - (index % HPAGE_PMD_NR);
    const policy = this.ctx.shmemHuge ?? 'never';
    const endPages = Math.ceil(Math.max(writeEnd, this.size) / PAGE_SIZE);
    const huge = this.hugetlb
      || (policy === 'always' || (policy === 'within_size' && endPages >= head + HPAGE_PMD_NR)) && this.rangeEmpty(head, HPAGE_PMD_NR);
    let f: ShmemFolio | undefined;
    if (huge) {
      try {
        f = { index: head, pfn: this.ctx.alloc.allocFolio(HPAGE_PMD_ORDER), order: HPAGE_PMD_ORDER, uptodate: false, pins: 0 };
      } catch (e) {
        if (this.hugetlb || !(e instanceof LuoError && e.errno === 'ENOMEM')) throw e;
      }
    }
    f ??= { index, pfn: this.ctx.alloc.allocFolio(0), order: 0, uptodate: false, pins: 0 };
    // Recycled or post-kexec pages hold old bytes or poison: clear them (free for untouched pages).
    this.ctx.mem.zero(pfnPa(f.pfn), folioBytes(f));
    this.cacheSet(f);
    return f;
  }

  /**
   * shmem_get_folio: the folio for page `index`, allocated when missing. A fresh folio stays
   * !uptodate for SGP_WRITE (the writer fills it) and SGP_FALLOC; anything else but SGP_WRITE
   * clears a !uptodate folio and marks it uptodate (fallocate over a fallocated folio included).
   */
  getFolio(index: number, sgp: Sgp, writeEnd = 0): ShmemFolio {
    let f = this.folioAt(index);
    if (!f) {
      f = this.allocate(index, writeEnd);
      if (sgp === 'falloc') return f;
    }
    if (sgp !== 'write' && !f.uptodate) {
      this.ctx.mem.zero(pfnPa(f.pfn), folioBytes(f));
      f.uptodate = true;
    }
    return f;
  }

  /** Bytes [off, off + n) of the file: holes and !uptodate folios read as zeros. */
  readAt(off: number, n: number): Uint8Array {
    const out = new Uint8Array(n);
    let done = 0;
    while (done < n) {
      const at = off + done;
      const index = Math.floor(at / PAGE_SIZE);
      const f = this.folioAt(index);
      const len = Math.min(n - done, f ? (f.index + (1 << f.order)) * PAGE_SIZE - at : PAGE_SIZE - (at % PAGE_SIZE));
      if (f && f.uptodate) this.ctx.mem.readInto(pfnPa(f.pfn) + BigInt(at - f.index * PAGE_SIZE), out, done, len);
      done += len;
    }
    return out;
  }

  /**
   * True when the file already holds exactly `data` at `off` (page-aligned, at most a page): luo's
   * capture of a real memfd leaves such a page alone. Reads a stored page in place.
   */
  holds(off: number, data: Uint8Array): boolean {
    const index = Math.floor(off / PAGE_SIZE);
    const f = this.folioAt(index);
    const page = f && f.uptodate ? this.ctx.mem.storedPage(f.pfn + index - f.index) : undefined;
    const have = page ? page.subarray(0, data.length) : this.readAt(off, data.length);
    return Buffer.from(have.buffer, have.byteOffset, have.length).equals(data);
  }

  /** The copy of one shmem_write_begin/write_end step (inside one page), after the checks. */
  writeChunk(off: number, data: Uint8Array): void {
    const f = this.getFolio(Math.floor(off / PAGE_SIZE), 'write', off + data.length);
    if (!f.uptodate) {
      // shmem_write_end zeroes what the copy did not cover before marking the folio uptodate.
      this.ctx.mem.zero(pfnPa(f.pfn), folioBytes(f));
      f.uptodate = true;
    }
    this.ctx.mem.write(pfnPa(f.pfn) + BigInt(off - f.index * PAGE_SIZE), data);
    if (off + data.length > this.size) this.size = off + data.length;
  }

  private drop(f: ShmemFolio): void {
    this.cacheDelete(f);
    // A pinned folio stays allocated until its last pin goes (folio_put on unpin).
    if (f.pins === 0) this.ctx.alloc.freeFolio(f.pfn, f.order);
  }

  /**
   * shmem_undo_range: folios entirely inside [start, end) bytes leave the cache; partly covered
   * ones get the covered bytes zeroed (a PMD folio is kept whole rather than split).
   */
  undoRange(start: number, end: number): void {
    for (const f of this.folios()) {
      const fs = f.index * PAGE_SIZE;
      const fe = fs + folioBytes(f);
      if (fe <= start || fs >= end) continue;
      if (fs >= start && fe <= end) this.drop(f);
      else if (f.uptodate) {
        const zs = Math.max(fs, start);
        this.ctx.mem.zero(pfnPa(f.pfn) + BigInt(zs - fs), Math.min(fe, end) - zs);
      }
    }
  }

  /** memfd_pin_folios over the whole file: holes get folios (SGP_CACHE); each folio listed once. */
  pinAll(): ShmemFolio[] {
    const out: ShmemFolio[] = [];
    const pages = Math.ceil(this.size / PAGE_SIZE);
    try {
      for (let index = 0; index < pages;) {
        const f = this.folioAt(index) ?? this.getFolio(index, 'cache', this.size);
        f.pins++;
        out.push(f);
        index = f.index + (1 << f.order);
      }
    } catch (e) {
      this.unpin(out);
      throw e;
    }
    return out;
  }

  /** unpin_folios: the last pin of a folio already truncated away frees it. */
  unpin(folios: readonly ShmemFolio[]): void {
    for (const f of folios) {
      f.pins--;
      if (f.pins === 0 && this.cache.get(f.index) !== f) this.ctx.alloc.freeFolio(f.pfn, f.order);
    }
  }

  /** shmem_add_to_page_cache of a folio restored from KHO: EINVAL if misaligned, EEXIST if taken. */
  insertFolio(index: number, pfn: number, order: number, uptodate: boolean): void {
    if (index % (1 << order) !== 0) throw new LuoError('EINVAL', `page index ${index} is not aligned to the order-${order} folio at pfn ${hex(pfn)}`);
    if (!this.rangeEmpty(index, 1 << order)) {
      let i = index;
      while (!this.folioAt(i)) i++; // the first page taken, for the message
      throw new LuoError('EEXIST', `page index ${i} already holds a folio (inserting pfn ${hex(pfn)} order ${order} at index ${index})`);
    }
    this.cacheSet({ index, pfn, order, uptodate, pins: 0 });
  }

  /** An open file now points at this inode (ihold). */
  hold(): void {
    this.openFiles++;
  }

  /** iput of the last open file: evict the page cache, giving every folio back. */
  put(): void {
    if (--this.openFiles > 0) return;
    for (const f of this.folios()) this.drop(f);
    this.releasedFlag = true;
  }
}

// ---------------------------------------------------------------- the open file

export interface MemfdStat {
  readonly size: number;
  /** st_blocks: 512-byte units actually allocated. */
  readonly blocks: number;
  readonly mode: number;
}

/** A mapping made with mapShared: munmap it with unmap(). */
export interface MemfdMapping {
  unmap(): void;
}

/**
 * An open memfd (struct file). Several fds may share it (get()/close() count them), and LUO holds
 * its own references through luoRefs; the inode is released when the last of both goes.
 */
export class MemfdFile implements KernelFile {
  readonly kind: 'memfd' | 'hugetlb-memfd';
  pos = 0;
  /** FD_CLOEXEC of the fd memfd_create returned (an fd property: never preserved). */
  readonly cloexec: boolean;
  private refs = 1;
  private luo = 0;
  private releasedFlag = false;

  constructor(readonly inode: MemfdInode, opts: { cloexec?: boolean } = {}) {
    this.kind = inode.hugetlb ? 'hugetlb-memfd' : 'memfd';
    this.cloexec = opts.cloexec ?? false;
    inode.hold();
  }

  /** References LUO holds while the file is preserved or retrieved (set by LUO). */
  get luoRefs(): number {
    return this.luo;
  }

  set luoRefs(n: number) {
    this.luo = n;
    this.maybeRelease();
  }

  get closed(): boolean {
    return this.releasedFlag;
  }

  /** Another fd for this open file (dup, fget): close() each one. */
  get(): this {
    this.live('get');
    this.refs++;
    return this;
  }

  /** open("/proc/self/fd/N", O_RDWR): a new open file of the same inode, with its own position. */
  reopen(): MemfdFile {
    this.live('reopen');
    return new MemfdFile(this.inode);
  }

  /** close(fd) (fput): the inode goes when no fd and no LUO reference is left. */
  close(): void {
    this.live('close');
    if (this.refs === 0) throw new LuoError('EBADF', 'close: no fd refers to this memfd any more');
    this.refs--;
    this.maybeRelease();
  }

  private maybeRelease(): void {
    if (this.releasedFlag || this.refs > 0 || this.luo > 0) return;
    this.releasedFlag = true;
    this.inode.put();
  }

  private live(op: string): void {
    if (this.releasedFlag) throw new LuoError('EBADF', `${op}: the memfd has been closed`);
  }

  // ---- read side

  read(n: number): Uint8Array {
    const out = this.pread(n, this.pos);
    this.pos += out.length;
    return out;
  }

  /** pread64: EINVAL for a negative offset; reads stop at i_size. */
  pread(n: number, off: number): Uint8Array {
    this.live('read');
    if (!Number.isSafeInteger(n) || n < 0) throw new LuoError('EINVAL', `read: bad count ${n}`);
    if (!Number.isSafeInteger(off) || off < 0) throw new LuoError('EINVAL', `pread: offset ${off} is negative or not an integer`);
    const size = this.inode.size;
    if (off >= size || n === 0) return new Uint8Array(0);
    return this.inode.readAt(off, Math.min(n, size - off));
  }

  /**
   * lseek (generic_file_llseek_size with MAX_LFS_FILESIZE): EINVAL for an unknown whence or a
   * negative or too large result. SEEK_DATA/SEEK_HOLE are not modelled (EINVAL).
   */
  lseek(off: number, whence: number): number {
    this.live('lseek');
    if (!Number.isSafeInteger(off)) throw new LuoError('EINVAL', `lseek: offset ${off} is not an integer`);
    let base: number;
    if (whence === SEEK_SET) base = 0;
    else if (whence === SEEK_CUR) base = this.pos;
    else if (whence === SEEK_END) base = this.inode.size;
    else throw new LuoError('EINVAL', `lseek: whence ${whence} is not SEEK_SET, SEEK_CUR or SEEK_END`);
    const to = base + off;
    if (to < 0) throw new LuoError('EINVAL', `lseek: resulting offset ${to} is negative`);
    if (to > MEMFD_MAX_BYTES) throw new LuoError('EINVAL', `lseek: resulting offset ${to} exceeds the maximum file size`);
    this.pos = to;
    return to;
  }

  // ---- write side

  write(data: Uint8Array): number {
    const n = this.pwrite(data, this.pos);
    this.pos += n;
    return n;
  }

  /**
   * pwrite64 through shmem_file_write_iter and generic_perform_write: one page per step; a step
   * refused by shmem_write_begin (seals: EPERM; frozen by LUO and growing the file: EPERM) ends the
   * write short, or fails it when nothing was written yet.
   */
  pwrite(data: Uint8Array, off: number): number {
    this.live('write');
    if (!Number.isSafeInteger(off) || off < 0) throw new LuoError('EINVAL', `pwrite: offset ${off} is negative or not an integer`);
    // hugetlbfs has neither .write nor .write_iter: vfs_write gives EINVAL.
    if (this.inode.hugetlb) throw new LuoError('EINVAL', 'write: hugetlbfs files cannot be written with write(2)');
    if (data.length === 0) return 0;
    if (off >= MEMFD_MAX_BYTES) throw new LuoError('EFBIG', `write: offset ${off} is at or beyond the maximum file size`);
    const count = Math.min(data.length, MEMFD_MAX_BYTES - off);
    let done = 0;
    while (done < count) {
      const at = off + done;
      const len = Math.min(count - done, PAGE_SIZE - (at % PAGE_SIZE));
      try {
        this.writeBegin(at, len);
        this.inode.writeChunk(at, data.subarray(done, done + len));
      } catch (e) {
        if (done > 0 && e instanceof LuoError) break;
        throw e;
      }
      done += len;
    }
    return done;
  }

  /** shmem_write_begin's refusals, in its order. */
  private writeBegin(pos: number, len: number): void {
    const ino = this.inode;
    if (ino.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) throw new LuoError('EPERM', `write at ${pos}: the memfd is sealed against writes (seals ${hex(ino.seals)})`);
    if (ino.seals & F_SEAL_GROW && pos + len > ino.size) throw new LuoError('EPERM', `write of [${pos}, ${pos + len}) would grow the memfd past ${ino.size} under F_SEAL_GROW`);
    if (ino.frozen && pos + len > ino.size) throw new LuoError('EPERM', `write of [${pos}, ${pos + len}) would grow the memfd past ${ino.size} while LUO preserves it`);
  }

  /**
   * ftruncate via shmem_setattr (or hugetlbfs_setattr): EINVAL for a negative length (or one that
   * is not a huge-page multiple on hugetlbfs), EFBIG past the maximum, EPERM under SHRINK/GROW
   * seals, EPERM for any size change while LUO preserves the file.
   */
  ftruncate(len: number): void {
    this.live('ftruncate');
    const ino = this.inode;
    if (!Number.isSafeInteger(len) || len < 0) {
      if (Number.isInteger(len) && len > MEMFD_MAX_BYTES) throw new LuoError('EFBIG', `ftruncate: length ${len} exceeds the maximum file size`);
      throw new LuoError('EINVAL', `ftruncate: length ${len} is negative or not an integer`);
    }
    if (ino.hugetlb && len % (PAGE_SIZE << HPAGE_PMD_ORDER) !== 0) throw new LuoError('EINVAL', `ftruncate: ${len} is not a multiple of the 2 MiB huge page size`);
    if ((len < ino.size && ino.seals & F_SEAL_SHRINK) || (len > ino.size && ino.seals & F_SEAL_GROW)) {
      throw new LuoError('EPERM', `ftruncate ${ino.size} -> ${len}: refused by seals ${hex(ino.seals)}`);
    }
    if (len !== ino.size && ino.frozen) throw new LuoError('EPERM', `ftruncate ${ino.size} -> ${len}: the memfd is preserved by LUO (its mapping is frozen)`);
    const old = ino.size;
    ino.size = len;
    // shmem_setattr truncates past the new size whenever it does not grow the file, the same size
    // included: folios fallocated beyond EOF (FALLOC_FL_KEEP_SIZE) go then too.
    if (len <= old) ino.undoRange(len, Number.MAX_SAFE_INTEGER);
  }

  /**
   * fallocate (vfs_fallocate, then shmem_fallocate or hugetlbfs_fallocate): allocates the folios
   * of [off, off + len) (they stay !uptodate, reading as zeros) and grows i_size unless
   * FALLOC_FL_KEEP_SIZE; FALLOC_FL_PUNCH_HOLE (with KEEP_SIZE) frees them instead. On failure the
   * folios this call allocated are given back.
   */
  fallocate(off: number, len: number, mode = 0): void {
    this.live('fallocate');
    const ino = this.inode;
    if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < 0 || len <= 0) throw new LuoError('EINVAL', `fallocate: bad range offset ${off} length ${len}`);
    if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) throw new LuoError('EOPNOTSUPP', `fallocate: mode ${hex(mode)} is not supported by ${ino.hugetlb ? 'hugetlbfs' : 'shmem'}`);
    if (mode & FALLOC_FL_PUNCH_HOLE && !(mode & FALLOC_FL_KEEP_SIZE)) throw new LuoError('EOPNOTSUPP', 'fallocate: FALLOC_FL_PUNCH_HOLE needs FALLOC_FL_KEEP_SIZE');
    if (off + len > MEMFD_MAX_BYTES) throw new LuoError('EFBIG', `fallocate: [${off}, ${off + len}) exceeds the maximum file size`);
    if (ino.frozen) throw new LuoError('EPERM', 'fallocate: the memfd is preserved by LUO (its mapping is frozen)');
    const unit = ino.hugetlb ? PAGE_SIZE << HPAGE_PMD_ORDER : PAGE_SIZE;
    if (mode & FALLOC_FL_PUNCH_HOLE) {
      if (ino.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) throw new LuoError('EPERM', `fallocate: punching a hole is refused by seals ${hex(ino.seals)}`);
      // hugetlbfs only punches whole huge pages.
      const start = ino.hugetlb ? Math.ceil(off / unit) * unit : off;
      const end = ino.hugetlb ? Math.floor((off + len) / unit) * unit : off + len;
      if (end > start) ino.undoRange(start, end);
      return;
    }
    if (ino.seals & F_SEAL_GROW && off + len > ino.size) throw new LuoError('EPERM', `fallocate: growing to ${off + len} is refused by F_SEAL_GROW`);
    const first = Math.floor(off / unit) * (unit / PAGE_SIZE);
    const end = Math.ceil((off + len) / unit) * (unit / PAGE_SIZE);
    const fresh: ShmemFolio[] = [];
    try {
      for (let index = first; index < end;) {
        const had = ino.folioAt(index);
        const f = ino.getFolio(index, 'falloc', off + len);
        if (!had) fresh.push(f);
        index = f.index + (1 << f.order);
      }
    } catch (e) {
      for (const f of fresh) ino.undoRange(f.index * PAGE_SIZE, (f.index + (1 << f.order)) * PAGE_SIZE);
      throw e;
    }
    if (!(mode & FALLOC_FL_KEEP_SIZE) && off + len > ino.size) ino.size = off + len;
  }

  // ---- seals and mappings

  /**
   * F_ADD_SEALS (memfd_fcntl, memfd_add_seals in mm/memfd.c, 7.3.4): EINVAL for unknown bits, EPERM
   * once F_SEAL_SEAL is set; F_SEAL_EXEC on a file with exec bits implies SHRINK, GROW, WRITE and
   * FUTURE_WRITE, and that implication is applied before the write check, so a new F_SEAL_WRITE
   * (asked for, or implied) is EBUSY while shared writable mappings exist or pages are pinned
   * (memfd_wait_for_pins gives up on a LUO-preserved memfd's pinned folios).
   */
  addSeals(seals: number): void {
    this.live('F_ADD_SEALS');
    const ino = this.inode;
    if (!Number.isInteger(seals) || seals < 0 || seals > 0xffffffff) throw new LuoError('EINVAL', `F_ADD_SEALS: ${seals} is not an unsigned int`);
    if (seals & ~F_ALL_SEALS) throw new LuoError('EINVAL', `F_ADD_SEALS: unknown seal bits ${hex(seals & ~F_ALL_SEALS)}`);
    if (ino.seals & F_SEAL_SEAL) throw new LuoError('EPERM', 'F_ADD_SEALS: the memfd is sealed with F_SEAL_SEAL (or was created without MFD_ALLOW_SEALING)');
    let add = seals;
    if (add & F_SEAL_EXEC && ino.mode & 0o111) add |= F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;
    if (add & F_SEAL_WRITE && !(ino.seals & F_SEAL_WRITE)) {
      const why = add === seals ? 'F_SEAL_WRITE' : 'F_SEAL_EXEC (implying F_SEAL_WRITE)';
      if (ino.writableMappings > 0) throw new LuoError('EBUSY', `F_ADD_SEALS: ${why} with ${ino.writableMappings} shared writable mapping(s)`);
      const pinned = ino.folios().filter((f) => f.pins > 0).length;
      if (pinned > 0) throw new LuoError('EBUSY', `F_ADD_SEALS: ${why} while ${pinned} folio(s) are pinned (memfd_wait_for_pins timed out)`);
    }
    ino.seals |= add;
  }

  /** F_GET_SEALS. */
  getSeals(): number {
    this.live('F_GET_SEALS');
    return this.inode.seals;
  }

  /**
   * mmap(MAP_SHARED) bookkeeping only (memfd_check_seals_mmap, mapping_map_writable): EPERM for a
   * writable shared mapping of a write-sealed memfd. Page contents are reached through read/write.
   */
  mapShared(writable: boolean): MemfdMapping {
    this.live('mmap');
    const ino = this.inode;
    if (writable && ino.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) throw new LuoError('EPERM', `mmap: shared writable mapping of a write-sealed memfd (seals ${hex(ino.seals)})`);
    if (writable) ino.writableMappings++;
    let mapped = true;
    return {
      unmap: () => {
        if (mapped && writable) ino.writableMappings--;
        mapped = false;
      },
    };
  }

  stat(): MemfdStat {
    this.live('fstat');
    return { size: this.inode.size, blocks: this.inode.cachedPages * (PAGE_SIZE / 512), mode: 0o100000 | this.inode.mode };
  }
}

// ---------------------------------------------------------------- creation

/**
 * memfd_alloc_file: the in-kernel constructor (LUO's retrieve uses it with name ""). No flag
 * checks; MFD_NOEXEC_SEAL clears the exec bits and seals F_SEAL_EXEC, MFD_ALLOW_SEALING lifts the
 * initial F_SEAL_SEAL. `name` becomes the dentry name as given.
 */
export function memfdAllocFile(ctx: MemfdContext, name: string, flags: number): MemfdFile {
  if (flags & MFD_HUGETLB) {
    const sizeLog = (flags >>> MFD_HUGE_SHIFT) & MFD_HUGE_MASK;
    // Only the 2 MiB hstate exists on the simulated machine (hugetlb_file_setup: ENODEV otherwise).
    if (sizeLog !== 0 && sizeLog !== PAGE_SHIFT + HPAGE_PMD_ORDER) throw new LuoError('ENODEV', `memfd: no hugetlb pool with 2^${sizeLog}-byte pages`);
  }
  const inode = new MemfdInode(ctx, name, (flags & MFD_HUGETLB) !== 0);
  if (flags & MFD_NOEXEC_SEAL) {
    inode.mode &= ~0o111;
    inode.seals = (inode.seals & ~F_SEAL_SEAL) | F_SEAL_EXEC;
  } else if (flags & MFD_ALLOW_SEALING) {
    inode.seals &= ~F_SEAL_SEAL;
  }
  return new MemfdFile(inode, { cloexec: (flags & MFD_CLOEXEC) !== 0 });
}

/**
 * memfd_create(2): EINVAL for unknown flags, MFD_EXEC with MFD_NOEXEC_SEAL, a name longer than
 * MFD_NAME_MAX_LEN bytes, or (vm.memfd_noexec = 2) neither exec flag. The inode is named
 * "memfd:" + name; a name is a C string, so it ends at its first NUL.
 */
export function memfdCreate(ctx: MemfdContext, name: string, flags: number): MemfdFile {
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) throw new LuoError('EINVAL', `memfd_create: flags ${flags} are not an unsigned int`);
  const allowed = flags & MFD_HUGETLB ? MFD_ALL_FLAGS | (MFD_HUGE_MASK << MFD_HUGE_SHIFT) : MFD_ALL_FLAGS;
  if ((flags & ~allowed) >>> 0) throw new LuoError('EINVAL', `memfd_create: unknown flags ${hex((flags & ~allowed) >>> 0)}`);
  if (flags & MFD_EXEC && flags & MFD_NOEXEC_SEAL) throw new LuoError('EINVAL', 'memfd_create: MFD_EXEC and MFD_NOEXEC_SEAL together');
  let f = flags;
  if (!(f & (MFD_EXEC | MFD_NOEXEC_SEAL))) {
    const scope = ctx.noexecScope ?? 0;
    if (scope === 2) throw new LuoError('EINVAL', 'memfd_create: vm.memfd_noexec=2 requires MFD_NOEXEC_SEAL');
    f |= scope === 1 ? MFD_NOEXEC_SEAL : MFD_EXEC;
  }
  const nul = name.indexOf('\0');
  const cname = nul >= 0 ? name.slice(0, nul) : name;
  const len = new TextEncoder().encode(cname).length;
  if (len > MFD_NAME_MAX_LEN) throw new LuoError('EINVAL', `memfd_create: name is ${len} bytes, at most ${MFD_NAME_MAX_LEN} allowed`);
  return memfdAllocFile(ctx, `memfd:${cname}`, f);
}
