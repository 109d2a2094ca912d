/**
 * Token walking over a flattened device tree that lives in a caller-owned buffer, as the in-place
 * editors (rw.ts, wip.ts) need it: header words, next tag, node/property offsets, end of a node,
 * string-table search. Mirrors libfdt's fdt.c and the fdt_ro.c lookups that fdt_rw.c builds on.
 * Like libfdt, every function returns an offset (>= 0) or a negative FDT_ERR value; the public
 * classes turn the negative values into FdtError.
 */
import {
  FDT_BEGIN_NODE,
  FDT_END,
  FDT_END_NODE,
  FDT_ERR,
  FDT_FIRST_SUPPORTED_VERSION,
  FDT_LAST_SUPPORTED_VERSION,
  FDT_MAGIC,
  FDT_NOP,
  FDT_PROP,
  FDT_RESERVE_ENTRY_SIZE,
  FdtError,
  type FdtErrCode,
} from './format.ts';

// Module-local copies of the format constants read on hot paths: under the tsx loader an imported
// binding can cost a getter call per read, which dominated the profile of the walks.
const BEGIN_NODE: number = FDT_BEGIN_NODE;
const END_NODE: number = FDT_END_NODE;
const PROP: number = FDT_PROP;
const NOP: number = FDT_NOP;
const END: number = FDT_END;
const RSV_ENTRY: number = FDT_RESERVE_ENTRY_SIZE;
const MAGIC: number = FDT_MAGIC;
const FIRST_VERSION: number = FDT_FIRST_SUPPORTED_VERSION;
const LAST_VERSION: number = FDT_LAST_SUPPORTED_VERSION;

/** The magic a sequential-write tree carries until fdt_finish (~FDT_MAGIC). */
export const FDT_SW_MAGIC = ~FDT_MAGIC >>> 0;
const SW_MAGIC: number = FDT_SW_MAGIC;

/** Byte offsets of the ten header words (struct fdt_header). */
export const H_MAGIC = 0;
export const H_TOTALSIZE = 4;
export const H_OFF_DT_STRUCT = 8;
export const H_OFF_DT_STRINGS = 12;
export const H_OFF_MEM_RSVMAP = 16;
export const H_VERSION = 20;
export const H_LAST_COMP_VERSION = 24;
export const H_BOOT_CPUID_PHYS = 28;
export const H_SIZE_DT_STRINGS = 32;
export const H_SIZE_DT_STRUCT = 36;

/** Negative libfdt return values. */
export const ERR_NOTFOUND = -FDT_ERR.NOTFOUND;
export const ERR_EXISTS = -FDT_ERR.EXISTS;
export const ERR_NOSPACE = -FDT_ERR.NOSPACE;
export const ERR_BADOFFSET = -FDT_ERR.BADOFFSET;
export const ERR_BADPATH = -FDT_ERR.BADPATH;
export const ERR_BADSTATE = -FDT_ERR.BADSTATE;
export const ERR_TRUNCATED = -FDT_ERR.TRUNCATED;
export const ERR_BADMAGIC = -FDT_ERR.BADMAGIC;
export const ERR_BADVERSION = -FDT_ERR.BADVERSION;
export const ERR_BADSTRUCTURE = -FDT_ERR.BADSTRUCTURE;
export const ERR_BADLAYOUT = -FDT_ERR.BADLAYOUT;
export const ERR_INTERNAL = -FDT_ERR.INTERNAL;
export const ERR_BADVALUE = -FDT_ERR.BADVALUE;
export const ERR_ALIGNMENT = -FDT_ERR.ALIGNMENT;

const CODE_BY_VALUE = new Map<number, FdtErrCode>(
  (Object.entries(FDT_ERR) as Array<[FdtErrCode, number]>).map(([k, v]) => [-v, k]),
);

/** The FdtError for a negative libfdt value (an unknown value reads as BADOFFSET). */
export function fdtError(ret: number, offset: number, detail: string): FdtError {
  return new FdtError(CODE_BY_VALUE.get(ret) ?? 'BADOFFSET', offset, detail);
}

/** Throws the FdtError for `ret` when it is negative; returns it otherwise. */
export function check(ret: number, offset: number, detail: string): number {
  if (ret < 0) throw fdtError(ret, offset, detail);
  return ret;
}

/** A C string's bytes (Latin-1 for code points up to 0xff, else UTF-8), cut at the first NUL. */
export function cstrBytes(s: string): Uint8Array {
  let narrow = true;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) { narrow = false; break; }
    if (c === 0) { s = s.slice(0, i); break; }
  }
  if (narrow) {
    const out = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
    return out;
  }
  const b = new TextEncoder().encode(s);
  const nul = b.indexOf(0);
  return nul < 0 ? b : b.subarray(0, nul);
}

/**
 * A tree in a buffer, walked the way libfdt walks it. Header words are read from the buffer on
 * every call, so edits made through the buffer are always seen. `next` is the `nextoffset` out
 * parameter of the last nextTag(); `depth` is the depth counter nextNode() updates when asked to.
 */
export class FdtView {
  readonly buf: Uint8Array;
  readonly dv: DataView;
  next = 0;
  depth = 0;
  /** Property length out parameter of getProperty() (or its negative error). */
  len = 0;
  // Header words, cached: refreshed by refresh() (roProbe calls it) and by every setU32 into the
  // header, so each operation sees the header as it is when the operation starts.
  private total = 0;
  private base = 0;
  private strings = 0;
  private ver = 0;
  private stringsSize = 0;
  private structSize = 0;
  /** min(totalsize, buffer length): nothing at or past it is ever read. */
  private limit = 0;
  private magic = 0;
  /** fdt_ro_probe_'s answer for the cached header: totalsize, or the error. */
  private probed = 0;

  constructor(buf: Uint8Array) {
    this.buf = buf;
    this.dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.refresh();
  }

  /** Re-reads the header words (call after the buffer was changed from outside). */
  refresh(): void {
    if (this.buf.length < 40) {
      this.total = this.base = this.strings = this.ver = this.stringsSize = this.structSize = this.limit = this.magic = 0;
      this.probed = (this.buf.byteOffset & 7) !== 0 ? ERR_ALIGNMENT : ERR_TRUNCATED;
      return;
    }
    const dv = this.dv;
    this.magic = dv.getUint32(H_MAGIC);
    this.total = dv.getUint32(H_TOTALSIZE);
    this.base = dv.getUint32(H_OFF_DT_STRUCT);
    this.strings = dv.getUint32(H_OFF_DT_STRINGS);
    this.ver = dv.getUint32(H_VERSION);
    this.stringsSize = dv.getUint32(H_SIZE_DT_STRINGS);
    this.structSize = dv.getUint32(H_SIZE_DT_STRUCT);
    this.limit = Math.min(this.total, this.buf.length);
    this.probed = this.probe();
  }

  /** fdt_ro_probe_ on the cached words. */
  private probe(): number {
    if ((this.buf.byteOffset & 7) !== 0) return ERR_ALIGNMENT;
    if (this.magic === MAGIC) {
      if (this.ver < FIRST_VERSION) return ERR_BADVERSION;
      if (this.dv.getUint32(H_LAST_COMP_VERSION) > LAST_VERSION) return ERR_BADVERSION;
    } else if (this.magic === SW_MAGIC) {
      if (this.structSize === 0) return ERR_BADSTATE;
    } else {
      return ERR_BADMAGIC;
    }
    if (this.total >= 0x7fffffff || this.total > this.buf.length) return ERR_TRUNCATED;
    return this.total;
  }

  u32(off: number): number {
    return this.dv.getUint32(off);
  }
  setU32(off: number, v: number): void {
    this.dv.setUint32(off, v >>> 0);
    if (off < 40) this.refresh();
  }
  get totalsize(): number { return this.total; }
  get offDtStruct(): number { return this.base; }
  get offDtStrings(): number { return this.strings; }
  get offMemRsvmap(): number { return this.dv.getUint32(H_OFF_MEM_RSVMAP); }
  get version(): number { return this.ver; }
  get sizeDtStrings(): number { return this.stringsSize; }
  get sizeDtStruct(): number { return this.structSize; }

  /**
   * fdt_ro_probe_: an 8-byte aligned tree (the buffer's offset in its memory stands in for the
   * address), magic, version window, and (luo's addition) totalsize within the buffer. Returns
   * totalsize or the error, and re-reads the header first.
   */
  roProbe(): number {
    this.refresh();
    return this.probed;
  }

  /** fdt_offset_ptr() != NULL: `len` bytes at structure offset `offset` are inside the blob. */
  inStruct(offset: number, len: number): boolean {
    if (offset < 0) return false;
    if (offset + this.base + len > this.limit) return false;
    if (this.ver >= 0x11 && offset + len > this.structSize) return false;
    return true;
  }

  /** fdt_next_tag: the tag at `start`; `this.next` gets the next tag's offset or an error. */
  nextTag(start: number): number {
    this.next = ERR_TRUNCATED;
    if (!this.inStruct(start, 4)) return END;
    const base = this.base;
    const buf = this.buf;
    const tag = this.dv.getUint32(base + start);
    let offset = start + 4;
    this.next = ERR_BADSTRUCTURE;
    switch (tag) {
      case BEGIN_NODE: {
        // skip the name: every byte up to and including its NUL must be inside the struct block
        let limit = this.limit - base;
        if (this.ver >= 0x11 && this.structSize < limit) limit = this.structSize;
        const nul = buf.indexOf(0, base + offset) - base;
        if (nul < 0 || nul >= limit) return END;
        offset = nul + 1;
        break;
      }
      case PROP: {
        if (!this.inStruct(offset, 4)) return END;
        const len = this.dv.getUint32(base + offset);
        if (len + offset >= 0x7fffffff) return END;
        offset += 8 + len;
        if (this.ver < 0x10 && len >= 8 && ((offset - len) % 8) !== 0) offset += 4;
        break;
      }
      case END:
      case END_NODE:
      case NOP:
        break;
      default:
        return END;
    }
    if (!this.inStruct(start, offset - start)) return END;
    this.next = (offset + 3) & ~3;
    return tag;
  }

  /** fdt_check_node_offset_: the offset just past the node's name, or BADOFFSET. */
  checkNodeOffset(offset: number): number {
    if (offset < 0 || (offset & 3) !== 0) return ERR_BADOFFSET;
    if (this.nextTag(offset) !== BEGIN_NODE) return ERR_BADOFFSET;
    return this.next;
  }

  /** fdt_check_prop_offset_. */
  checkPropOffset(offset: number): number {
    if (offset < 0 || (offset & 3) !== 0) return ERR_BADOFFSET;
    if (this.nextTag(offset) !== PROP) return ERR_BADOFFSET;
    return this.next;
  }

  /** fdt_next_node; with `withDepth` it updates `this.depth` as libfdt's *depth. */
  nextNode(offset: number, withDepth: boolean): number {
    let nextoffset = 0;
    if (offset >= 0) {
      nextoffset = this.checkNodeOffset(offset);
      if (nextoffset < 0) return nextoffset;
    }
    let tag: number;
    do {
      offset = nextoffset;
      tag = this.nextTag(offset);
      nextoffset = this.next;
      if (tag === BEGIN_NODE) {
        if (withDepth) this.depth++;
      } else if (tag === END_NODE) {
        if (withDepth && --this.depth < 0) return nextoffset;
      } else if (tag === END) {
        if (nextoffset >= 0 || (nextoffset === ERR_TRUNCATED && !withDepth)) return ERR_NOTFOUND;
        return nextoffset;
      }
    } while (tag !== BEGIN_NODE);
    return offset;
  }

  /** fdt_node_end_offset_: the offset just past the node's END_NODE. */
  nodeEndOffset(offset: number): number {
    this.depth = 0;
    while (offset >= 0 && this.depth >= 0) offset = this.nextNode(offset, true);
    return offset;
  }

  /** fdt_num_mem_rsv: entries before the one whose size is 0. */
  numMemRsv(): number {
    this.refresh();
    const base = this.offMemRsvmap;
    const limit = this.limit - RSV_ENTRY;
    for (let i = 0; ; i++) {
      const abs = base + i * RSV_ENTRY;
      if (abs > limit) return ERR_TRUNCATED;
      if (this.dv.getUint32(abs + 8) === 0 && this.dv.getUint32(abs + 12) === 0) return i;
    }
  }

  /** fdt_get_name: the name bytes' absolute start; `this.len` gets the length (or the error). */
  getName(nodeoffset: number): number {
    let err = this.probed;
    if (err >= 0) err = this.checkNodeOffset(nodeoffset);
    if (err < 0) {
      this.len = err;
      return err;
    }
    const start = this.offDtStruct + nodeoffset + 4;
    this.len = this.buf.indexOf(0, start) - start;
    return start;
  }

  /** fdt_nodename_eq_: "name" also matches "name@unit" when `name` has no '@'. */
  private nodenameEq(offset: number, name: Uint8Array): boolean {
    const p = this.getName(offset);
    const olen = this.len;
    const len = name.length;
    if (p < 0 || olen < len) return false;
    const buf = this.buf;
    for (let i = 0; i < len; i++) if (buf[p + i] !== name[i]) return false;
    const c = buf[p + len];
    if (c === 0) return true;
    return c === 0x40 && name.indexOf(0x40) < 0;
  }

  /** fdt_subnode_offset_namelen. */
  subnodeOffset(offset: number, name: Uint8Array): number {
    const err = this.roProbe();
    if (err < 0) return err;
    this.depth = 0;
    for (; offset >= 0 && this.depth >= 0; offset = this.nextNode(offset, true)) {
      if (this.depth === 1 && this.nodenameEq(offset, name)) return offset;
    }
    if (this.depth < 0) return ERR_NOTFOUND;
    return offset;
  }

  /** fdt_path_offset (aliases included). */
  pathOffset(path: Uint8Array): number {
    const err = this.roProbe();
    if (err < 0) return err;
    const end = path.length;
    if (end <= 0) return ERR_BADPATH;
    let p = 0;
    let offset = 0;
    if (path[0] !== 0x2f) {
      let q = path.indexOf(0x2f);
      if (q < 0) q = end;
      const aliases = this.pathOffset(cstrBytes('/aliases'));
      if (aliases < 0) return ERR_BADPATH;
      const prop = this.getProperty(aliases, path.subarray(0, q));
      if (prop < 0) return ERR_BADPATH;
      const data = this.offDtStruct + prop + 12;
      const alias = this.buf.subarray(data, this.buf.indexOf(0, data));
      offset = this.pathOffset(alias);
      p = q;
    }
    while (p < end) {
      while (path[p] === 0x2f) {
        p++;
        if (p === end) return offset;
      }
      let q = path.indexOf(0x2f, p);
      if (q < 0) q = end;
      offset = this.subnodeOffset(offset, path.subarray(p, q));
      if (offset < 0) return offset;
      p = q;
    }
    return offset;
  }

  /** nextprop_: the next PROP at or after `offset` inside the node, skipping NOPs. */
  private nextProp(offset: number): number {
    let tag: number;
    do {
      tag = this.nextTag(offset);
      const nextoffset = this.next;
      if (tag === END) return nextoffset >= 0 ? ERR_BADSTRUCTURE : nextoffset;
      if (tag === PROP) return offset;
      offset = nextoffset;
    } while (tag === NOP);
    return ERR_NOTFOUND;
  }

  firstPropertyOffset(nodeoffset: number): number {
    const offset = this.checkNodeOffset(nodeoffset);
    if (offset < 0) return offset;
    return this.nextProp(offset);
  }

  nextPropertyOffset(offset: number): number {
    offset = this.checkPropOffset(offset);
    if (offset < 0) return offset;
    return this.nextProp(offset);
  }

  /**
   * fdt_string_eq_ (through fdt_get_string, which probes the header): the string at `stroffset`
   * of the strings block, NUL-terminated inside it, equals `name`.
   */
  private stringEq(stroffset: number, name: Uint8Array): boolean {
    if (this.probed < 0) return false;
    const abs = (stroffset + this.strings) >>> 0;
    if (abs >= this.limit) return false;
    let lim = this.limit - abs;
    const size = this.stringsSize;
    if (this.magic === MAGIC) {
      if (stroffset >= 0x80000000) return false;
      if (this.ver >= 17) {
        if (stroffset >= size) return false;
        if (size - stroffset < lim) lim = size - stroffset;
      }
    } else {
      const swOffset = -(stroffset | 0); // a sequential-write tree counts back from the end
      if (swOffset <= 0 || swOffset > size) return false;
      if (swOffset < lim) lim = swOffset;
    }
    const len = name.length;
    if (len >= lim) return false; // the name and its NUL must fit before the limit
    const buf = this.buf;
    for (let i = 0; i < len; i++) if (buf[abs + i] !== name[i]) return false;
    return buf[abs + len] === 0;
  }

  /**
   * fdt_get_property_namelen_: the structure offset of the node's property `name`, or the error.
   * `this.len` gets its value length (or the error).
   */
  getProperty(nodeoffset: number, name: Uint8Array): number {
    const base = this.offDtStruct;
    let offset = this.firstPropertyOffset(nodeoffset);
    for (; offset >= 0; offset = this.nextPropertyOffset(offset)) {
      const len = this.dv.getUint32(base + offset + 4);
      if (this.stringEq(this.dv.getUint32(base + offset + 8), name)) {
        this.len = len;
        return offset;
      }
    }
    this.len = offset;
    return offset;
  }

  /** fdt_node_offset_by_prop_value: the first node after `start` whose `name` equals `value`. */
  nodeOffsetByPropValue(start: number, name: Uint8Array, value: Uint8Array): number {
    const err = this.roProbe();
    if (err < 0) return err;
    const buf = this.buf;
    let offset: number;
    for (offset = this.nextNode(start, false); offset >= 0; offset = this.nextNode(offset, false)) {
      const prop = this.getProperty(offset, name);
      if (prop < 0 || this.len !== value.length) continue;
      const data = this.offDtStruct + prop + 12;
      let same = true;
      for (let i = 0; i < value.length; i++) if (buf[data + i] !== value[i]) { same = false; break; }
      if (same) return offset;
    }
    return offset;
  }
}


/** memmove inside one array, or between two (TypedArray.set copes with overlapping buffers). */
export function memmove(dst: Uint8Array, dOff: number, src: Uint8Array, sOff: number, n: number): void {
  if (n <= 0) return;
  if (dst === src) dst.copyWithin(dOff, sOff, sOff + n);
  else dst.set(src.subarray(sOff, sOff + n), dOff);
}
