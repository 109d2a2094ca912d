/**
 * In-place editing of a flattened device tree inside a caller-owned buffer (for the kernel: the KHO
 * root page in physical memory): open into a bigger buffer, add/remove nodes and properties,
 * resize values, pack. Mirrors libfdt's fdt_rw.c byte for byte, stale bytes included.
 */
import { FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_MAGIC, FDT_NOP, FDT_PROP, FDT_RESERVE_ENTRY_SIZE, FdtError } from './format.ts';
import {
  ERR_NOSPACE,
  ERR_NOTFOUND,
  ERR_BADOFFSET,
  FdtView,
  H_BOOT_CPUID_PHYS,
  H_LAST_COMP_VERSION,
  H_MAGIC,
  H_OFF_DT_STRINGS,
  H_OFF_DT_STRUCT,
  H_OFF_MEM_RSVMAP,
  H_SIZE_DT_STRINGS,
  H_SIZE_DT_STRUCT,
  H_TOTALSIZE,
  H_VERSION,
  check,
  cstrBytes,
  memmove,
} from './walk.ts';

// Module-local copies of imported constants used per operation (see walk.ts for why).
const BEGIN_NODE: number = FDT_BEGIN_NODE;
const END_NODE: number = FDT_END_NODE;
const PROP: number = FDT_PROP;
const NOP: number = FDT_NOP;
const RSV_ENTRY: number = FDT_RESERVE_ENTRY_SIZE;
const NOTFOUND: number = ERR_NOTFOUND;
const NOSPACE: number = ERR_NOSPACE;
const BADOFFSET: number = ERR_BADOFFSET;

/** Where fdt_pack and fdt_open_into put the reservation map: right after the 40-byte header. */
export const FDT_PACKED_RSVMAP_OFFSET = 40;

const tagAlign = (n: number): number => (n + 3) & ~3;

/** fdt_blocks_misordered_: the blocks are not in libfdt's order (rsvmap, struct, strings). */
function misordered(v: FdtView, memRsvSize: number, structSize: number): boolean {
  return v.offMemRsvmap < FDT_PACKED_RSVMAP_OFFSET
    || v.offDtStruct < v.offMemRsvmap + memRsvSize
    || v.offDtStrings < v.offDtStruct + structSize
    || v.totalsize < v.offDtStrings + v.sizeDtStrings;
}

/**
 * fdt_packblocks_: copies the three blocks of `old` to `dst` at `at` (rsvmap at +40, then struct,
 * then strings) and writes the five header words that describe them.
 */
function packBlocks(old: FdtView, dst: Uint8Array, at: number, memRsvSize: number, structSize: number, stringsSize: number): void {
  const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  const rsvOff = FDT_PACKED_RSVMAP_OFFSET;
  const structOff = rsvOff + memRsvSize;
  const stringsOff = structOff + structSize;
  memmove(dst, at + rsvOff, old.buf, old.offMemRsvmap, memRsvSize);
  dv.setUint32(at + H_OFF_MEM_RSVMAP, rsvOff);
  memmove(dst, at + structOff, old.buf, old.offDtStruct, structSize);
  dv.setUint32(at + H_OFF_DT_STRUCT, structOff);
  dv.setUint32(at + H_SIZE_DT_STRUCT, structSize);
  memmove(dst, at + stringsOff, old.buf, old.offDtStrings, stringsSize);
  dv.setUint32(at + H_OFF_DT_STRINGS, stringsOff);
  dv.setUint32(at + H_SIZE_DT_STRINGS, old.sizeDtStrings);
}

/**
 * A tree being edited in place. The object holds no state of its own: every call re-reads the
 * header from the buffer, as libfdt does, so the buffer may also be touched directly in between.
 * Node arguments are structure-block offsets (0 = root); all failures are FdtError.
 */
export class FdtRw {
  readonly buf: Uint8Array;
  private readonly v: FdtView;
  private allocated = false;

  /** Edits the tree already open in `buf` (what the kernel does with the KHO page pointer). */
  constructor(buf: Uint8Array) {
    this.buf = buf;
    this.v = new FdtView(buf);
  }

  /**
   * fdt_open_into: copies (or moves, when `src` and `dst` share memory — the kernel passes the
   * same page twice) the tree into `dst`, in libfdt's block order, with totalsize = `bufsize`.
   */
  static openInto(src: Uint8Array, dst: Uint8Array, bufsize: number = dst.length): FdtRw {
    if (!Number.isInteger(bufsize) || bufsize < 0 || bufsize > dst.length) {
      throw new FdtError('NOSPACE', 0, `openInto: bufsize ${bufsize} does not fit the ${dst.length}-byte buffer`);
    }
    const s = new FdtView(src);
    check(s.roProbe(), 0, 'openInto: source header');
    const n = check(s.numMemRsv(), s.offMemRsvmap, 'openInto: reservation map');
    const memRsvSize = (n + 1) * RSV_ENTRY;
    let structSize: number;
    if (s.version >= 17) {
      structSize = s.sizeDtStruct;
    } else if (s.version === 16) {
      structSize = 0;
      while (s.nextTag(structSize) !== FDT_END) structSize = s.next;
      structSize = check(s.next, structSize, 'openInto: v16 structure block');
    } else {
      throw new FdtError('BADVERSION', H_VERSION, `openInto: version ${s.version} cannot be opened`);
    }
    const ddv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
    if (!misordered(s, memRsvSize, structSize)) {
      // fdt_move
      const total = s.totalsize;
      if (total > bufsize) throw new FdtError('NOSPACE', H_TOTALSIZE, `openInto: the ${total}-byte tree does not fit in ${bufsize} bytes`);
      // (the kernel's fdt_open_into(page, page, ..) moves the tree onto itself: nothing to copy)
      if (src.buffer !== dst.buffer || src.byteOffset !== dst.byteOffset) memmove(dst, 0, src, 0, total);
      ddv.setUint32(H_VERSION, 17);
      ddv.setUint32(H_SIZE_DT_STRUCT, structSize);
      ddv.setUint32(H_TOTALSIZE, bufsize);
      return new FdtRw(dst);
    }
    const newsize = FDT_PACKED_RSVMAP_OFFSET + memRsvSize + structSize + s.sizeDtStrings;
    if (bufsize < newsize) throw new FdtError('NOSPACE', 0, `openInto: the reordered ${newsize}-byte tree does not fit in ${bufsize} bytes`);
    // Build at the start of dst, unless that overlaps the old tree: then right after the old tree.
    let tmp = 0;
    if (src.buffer === dst.buffer) {
      const fdtStart = src.byteOffset - dst.byteOffset;
      const fdtEnd = fdtStart + s.totalsize;
      if (newsize > fdtStart && tmp < fdtEnd) {
        tmp = fdtEnd;
        if (tmp + newsize > bufsize) throw new FdtError('NOSPACE', 0, `openInto: no room to reorder ${newsize} bytes after the tree`);
      }
    }
    packBlocks(s, dst, tmp, memRsvSize, structSize, s.sizeDtStrings);
    memmove(dst, 0, dst, tmp, newsize);
    ddv.setUint32(H_MAGIC, FDT_MAGIC);
    ddv.setUint32(H_TOTALSIZE, bufsize);
    ddv.setUint32(H_VERSION, 17);
    ddv.setUint32(H_LAST_COMP_VERSION, 16);
    ddv.setUint32(H_BOOT_CPUID_PHYS, s.u32(H_BOOT_CPUID_PHYS));
    return new FdtRw(dst);
  }

  /** The header's totalsize. */
  get totalsize(): number {
    return this.v.totalsize;
  }

  /** The tree's bytes (totalsize of them), a view into the buffer. */
  blob(): Uint8Array {
    return this.buf.subarray(0, this.v.totalsize);
  }

  // ---- checks and splicing (fdt_rw.c internals) ----

  /** fdt_rw_probe_: a v17 tree in libfdt's block order; a newer version is downgraded to 17. */
  private probe(what: string): void {
    const v = this.v;
    check(v.roProbe(), 0, `${what}: header`);
    if (v.version < 17) throw new FdtError('BADVERSION', H_VERSION, `${what}: version ${v.version} cannot be edited (open it into a buffer first)`);
    if (misordered(v, RSV_ENTRY, v.sizeDtStruct)) throw new FdtError('BADLAYOUT', 0, `${what}: blocks are not in libfdt's order (open it into a buffer first)`);
    if (v.version > 17) v.setU32(H_VERSION, 17);
  }

  /** fdt_splice_: moves the data after [p, p+oldlen) so that the hole becomes newlen bytes. */
  private splice(p: number, oldlen: number, newlen: number): number {
    const v = this.v;
    const dsize = v.offDtStrings + v.sizeDtStrings;
    if (oldlen < 0 || p + oldlen > dsize) return BADOFFSET;
    if (p < 0 || dsize + newlen < oldlen) return BADOFFSET;
    const need = dsize - oldlen + newlen;
    if (need > v.totalsize || need > this.buf.length) return NOSPACE;
    this.buf.copyWithin(p + newlen, p + oldlen, dsize);
    return 0;
  }

  private spliceStruct(p: number, oldlen: number, newlen: number): number {
    const err = this.splice(p, oldlen, newlen);
    if (err) return err;
    const v = this.v;
    const delta = newlen - oldlen;
    v.setU32(H_SIZE_DT_STRUCT, v.sizeDtStruct + delta);
    v.setU32(H_OFF_DT_STRINGS, v.offDtStrings + delta);
    return 0;
  }

  private spliceMemRsv(p: number, oldn: number, newn: number): number {
    const err = this.splice(p, oldn * RSV_ENTRY, newn * RSV_ENTRY);
    if (err) return err;
    const v = this.v;
    const delta = (newn - oldn) * RSV_ENTRY;
    v.setU32(H_OFF_DT_STRUCT, v.offDtStruct + delta);
    v.setU32(H_OFF_DT_STRINGS, v.offDtStrings + delta);
    return 0;
  }

  /** fdt_find_add_string_: offset of `s` in the strings block, appending it when absent. */
  private findAddString(s: Uint8Array): number {
    const v = this.v;
    const buf = this.buf;
    const strtab = v.offDtStrings;
    const size = v.sizeDtStrings;
    const slen = s.length;
    this.allocated = false;
    const last = strtab + size - (slen + 1);
    for (let p = strtab; p <= last; p++) {
      let i = 0;
      while (i < slen && buf[p + i] === s[i]) i++;
      if (i === slen && buf[p + slen] === 0) return p - strtab;
    }
    const at = strtab + size;
    const err = this.splice(at, 0, slen + 1);
    if (err) return err;
    v.setU32(H_SIZE_DT_STRINGS, size + slen + 1);
    this.allocated = true;
    buf.set(s, at);
    buf[at + slen] = 0;
    return at - strtab;
  }

  /** fdt_add_property_: a new property right after the node's name; its absolute offset. */
  private addProperty(node: number, name: Uint8Array, len: number): number {
    const v = this.v;
    const nextoffset = v.checkNodeOffset(node);
    if (nextoffset < 0) return nextoffset;
    const nameoff = this.findAddString(name);
    if (nameoff < 0) return nameoff;
    const prop = v.offDtStruct + nextoffset;
    const err = this.spliceStruct(prop, 0, 12 + tagAlign(len));
    if (err) {
      if (this.allocated) v.setU32(H_SIZE_DT_STRINGS, v.sizeDtStrings - (name.length + 1));
      return err;
    }
    v.setU32(prop, PROP);
    v.setU32(prop + 8, nameoff);
    v.setU32(prop + 4, len);
    return prop;
  }

  /** fdt_resize_property_: the existing property's value resized to `len`; its absolute offset. */
  private resizeProperty(node: number, name: Uint8Array, len: number): number {
    const v = this.v;
    const off = v.getProperty(node, name);
    if (off < 0) return off;
    const prop = v.offDtStruct + off;
    const err = this.spliceStruct(prop + 12, tagAlign(v.len), tagAlign(len));
    if (err) return err;
    v.setU32(prop + 4, len);
    return prop;
  }

  // ---- reservation map ----

  /** fdt_add_mem_rsv: a new entry before the terminator. */
  addMemRsv(address: bigint, size: bigint): void {
    this.probe('addMemRsv');
    const v = this.v;
    const n = check(v.numMemRsv(), v.offMemRsvmap, 'addMemRsv: reservation map');
    const re = v.offMemRsvmap + n * RSV_ENTRY;
    check(this.spliceMemRsv(re, 0, 1), re, 'addMemRsv');
    v.dv.setBigUint64(re, BigInt.asUintN(64, address));
    v.dv.setBigUint64(re + 8, BigInt.asUintN(64, size));
  }

  /** fdt_del_mem_rsv: removes entry `n`. */
  delMemRsv(n: number): void {
    const v = this.v;
    const re = v.offMemRsvmap + n * RSV_ENTRY;
    this.probe('delMemRsv');
    const num = check(v.numMemRsv(), v.offMemRsvmap, 'delMemRsv: reservation map');
    if (!Number.isInteger(n) || n < 0 || n >= num) throw new FdtError('NOTFOUND', re, `delMemRsv: no entry ${n} (${num} entries)`);
    check(this.spliceMemRsv(re, 1, 0), re, 'delMemRsv');
  }

  /** fdt_num_mem_rsv. */
  numMemRsv(): number {
    return check(this.v.numMemRsv(), this.v.offMemRsvmap, 'numMemRsv');
  }

  // ---- nodes ----

  /**
   * fdt_add_subnode: a new empty node after the parent's properties (so before its existing
   * subnodes); returns its offset. EXISTS when the parent already has a node of that name.
   */
  addSubnode(parent: number, name: string): number {
    this.probe('addSubnode');
    const v = this.v;
    const nb = cstrBytes(name);
    const found = v.subnodeOffset(parent, nb);
    if (found >= 0) throw new FdtError('EXISTS', found, `addSubnode: node ${JSON.stringify(name)} already exists`);
    if (found !== NOTFOUND) check(found, parent, `addSubnode(${JSON.stringify(name)})`);
    let tag = v.nextTag(parent);
    if (tag !== BEGIN_NODE) throw new FdtError('INTERNAL', parent, 'addSubnode: parent is not a node');
    let offset: number;
    let nextoffset = v.next;
    do {
      offset = nextoffset;
      tag = v.nextTag(offset);
      nextoffset = v.next;
    } while (tag === PROP || tag === NOP);
    const nh = v.offDtStruct + offset;
    const namespace = tagAlign(nb.length + 1);
    const nodelen = 4 + namespace + 4;
    check(this.spliceStruct(nh, 0, nodelen), offset, `addSubnode(${JSON.stringify(name)})`);
    v.setU32(nh, BEGIN_NODE);
    this.buf.fill(0, nh + 4, nh + 4 + namespace);
    this.buf.set(nb, nh + 4);
    v.setU32(nh + nodelen - 4, END_NODE);
    return offset;
  }

  /** fdt_del_node: removes the node and everything under it. */
  delNode(node: number): void {
    this.probe('delNode');
    const v = this.v;
    const end = check(v.nodeEndOffset(node), node, 'delNode');
    check(this.spliceStruct(v.offDtStruct + node, end - node, 0), node, 'delNode');
  }

  /** fdt_set_name: renames the node (its name area grows or shrinks in place). */
  setName(node: number, name: string): void {
    this.probe('setName');
    const v = this.v;
    const namep = v.getName(node);
    check(namep, node, 'setName');
    const oldlen = v.len;
    const nb = cstrBytes(name);
    check(this.spliceStruct(namep, tagAlign(oldlen + 1), tagAlign(nb.length + 1)), node, 'setName');
    this.buf.set(nb, namep);
    this.buf[namep + nb.length] = 0;
  }

  // ---- properties ----

  /**
   * fdt_setprop_placeholder: makes the property `len` bytes long (resizing it, or adding it right
   * after the node's name) and returns its value bytes, to be filled in by the caller.
   */
  setPropPlaceholder(node: number, name: string, len: number): Uint8Array {
    this.probe('setProp');
    if (!Number.isInteger(len) || len < 0 || len > 0x7fffffff) throw new FdtError('BADVALUE', node, `setProp ${name}: bad length ${len}`);
    const nb = cstrBytes(name);
    let prop = this.resizeProperty(node, nb, len);
    if (prop === NOTFOUND) prop = this.addProperty(node, nb, len);
    check(prop, node, `setProp(${JSON.stringify(name)}, ${len} bytes)`);
    return this.buf.subarray(prop + 12, prop + 12 + len);
  }

  /** fdt_setprop. */
  setProp(node: number, name: string, value: Uint8Array): void {
    const val = value.buffer === this.buf.buffer ? value.slice() : value;
    this.setPropPlaceholder(node, name, val.length).set(val);
  }

  /** fdt_setprop_string: the string and its NUL. */
  setPropString(node: number, name: string, s: string): void {
    const b = cstrBytes(s);
    const dst = this.setPropPlaceholder(node, name, b.length + 1);
    dst.set(b);
    dst[b.length] = 0;
  }

  /** fdt_setprop_u32: one big-endian cell. */
  setPropU32(node: number, name: string, v: number): void {
    const dst = this.setPropPlaceholder(node, name, 4);
    this.v.dv.setUint32(dst.byteOffset - this.buf.byteOffset, v >>> 0);
  }

  /** fdt_setprop_u64: a big-endian u64. */
  setPropU64(node: number, name: string, v: bigint): void {
    const dst = this.setPropPlaceholder(node, name, 8);
    this.v.dv.setBigUint64(dst.byteOffset - this.buf.byteOffset, BigInt.asUintN(64, v));
  }

  /** A raw native (little-endian) u64, as KHO's preserved-data and blob-size are stored. */
  setPropLeU64(node: number, name: string, v: bigint): void {
    const dst = this.setPropPlaceholder(node, name, 8);
    this.v.dv.setBigUint64(dst.byteOffset - this.buf.byteOffset, BigInt.asUintN(64, v), true);
  }

  /** fdt_appendprop: appends `value` to the property (creating it when absent). */
  appendProp(node: number, name: string, value: Uint8Array): void {
    this.probe('appendProp');
    const v = this.v;
    const val = value.buffer === this.buf.buffer ? value.slice() : value;
    const nb = cstrBytes(name);
    const off = v.getProperty(node, nb);
    if (off >= 0) {
      const oldlen = v.len;
      const prop = v.offDtStruct + off;
      const newlen = oldlen + val.length;
      check(this.spliceStruct(prop + 12, tagAlign(oldlen), tagAlign(newlen)), off, `appendProp(${JSON.stringify(name)})`);
      v.setU32(prop + 4, newlen);
      this.buf.set(val, prop + 12 + oldlen);
    } else {
      const prop = check(this.addProperty(node, nb, val.length), node, `appendProp(${JSON.stringify(name)})`);
      this.buf.set(val, prop + 12);
    }
  }

  /** fdt_delprop. */
  delProp(node: number, name: string): void {
    this.probe('delProp');
    const v = this.v;
    const off = check(v.getProperty(node, cstrBytes(name)), node, `delProp(${JSON.stringify(name)})`);
    check(this.spliceStruct(v.offDtStruct + off, 12 + tagAlign(v.len), 0), off, `delProp(${JSON.stringify(name)})`);
  }

  // ---- packing ----

  /** fdt_pack: blocks moved together right after the header; totalsize shrinks to fit. */
  pack(): void {
    this.probe('pack');
    const v = this.v;
    const n = check(v.numMemRsv(), v.offMemRsvmap, 'pack: reservation map');
    packBlocks(v, this.buf, 0, (n + 1) * RSV_ENTRY, v.sizeDtStruct, v.sizeDtStrings);
    v.refresh();
    v.setU32(H_TOTALSIZE, v.offDtStrings + v.sizeDtStrings);
  }

  // ---- lookups the editors need ----

  /**
   * fdt_subnode_offset: the child of `parent` called `name` ("name" also finds "name@unit"), or
   * -1 when there is none (as Fdt.subnodeOffset in ro.ts); other failures throw.
   */
  subnodeOffset(parent: number, name: string): number {
    const r = this.v.subnodeOffset(parent, cstrBytes(name));
    return r === NOTFOUND ? -1 : check(r, parent, `subnodeOffset(${JSON.stringify(name)})`);
  }

  /** fdt_path_offset. */
  pathOffset(path: string): number {
    return check(this.v.pathOffset(cstrBytes(path)), 0, `pathOffset(${JSON.stringify(path)})`);
  }

  /** fdt_getprop: the value (a live view into the buffer), or undefined when absent (as ro.ts). */
  getProp(node: number, name: string): Uint8Array | undefined {
    const v = this.v;
    v.refresh(); // fdt_getprop does not probe the header: it only walks the node
    const off = v.getProperty(node, cstrBytes(name));
    if (off === NOTFOUND) return undefined;
    check(off, node, `getProp(${JSON.stringify(name)})`);
    const at = v.offDtStruct + off + 12;
    return this.buf.subarray(at, at + v.len);
  }

  /**
   * fdt_node_offset_by_prop_value: the first node after `start` (-1: from the root on) whose
   * property `name` is exactly `value`, or -1 — how kho_remove_subtree finds a blob's node.
   */
  nodeOffsetByProp(name: string, value: Uint8Array, start = -1): number {
    const r = this.v.nodeOffsetByPropValue(start, cstrBytes(name), value);
    return r === NOTFOUND ? -1 : check(r, start, `nodeOffsetByProp(${JSON.stringify(name)})`);
  }

  /** fdt_next_node, depth-free: the node after `offset` in document order (-1: the root). */
  nextNode(offset: number): number {
    this.v.refresh();
    return check(this.v.nextNode(offset, false), offset, 'nextNode');
  }
}
