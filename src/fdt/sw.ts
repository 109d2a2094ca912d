/**
 * The sequential FDT writer: reservation map, then nodes and properties in order, then finish —
 * how the kernel builds the KHO root. Mirrors libfdt's fdt_sw.c byte for byte, including the
 * whole buffer it leaves behind (strings grow down from the end and are moved at finish).
 */
import {
  FDT_BEGIN_NODE,
  FDT_END,
  FDT_END_NODE,
  FDT_LAST_COMPATIBLE_VERSION,
  FDT_LAST_SUPPORTED_VERSION,
  FDT_MAGIC,
  FDT_PROP,
  FDT_RESERVE_ENTRY_SIZE,
  FDT_V17_HEADER_SIZE,
  FdtError,
} from './format.ts';
import {
  FDT_SW_MAGIC,
  H_LAST_COMP_VERSION,
  H_MAGIC,
  H_OFF_DT_STRINGS,
  H_OFF_DT_STRUCT,
  H_OFF_MEM_RSVMAP,
  H_SIZE_DT_STRINGS,
  H_SIZE_DT_STRUCT,
  H_TOTALSIZE,
  H_VERSION,
  cstrBytes,
  memmove,
} from './walk.ts';

// Module-local copies of imported constants used per call (see walk.ts for why).
const BEGIN_NODE: number = FDT_BEGIN_NODE;
const END_NODE: number = FDT_END_NODE;
const PROP: number = FDT_PROP;
const MAGIC: number = FDT_MAGIC;
const HDR_SIZE_DT_STRUCT: number = H_SIZE_DT_STRUCT;
const HDR_SIZE_DT_STRINGS: number = H_SIZE_DT_STRINGS;

/** fdt_create_with_flags flag: do not look for an existing copy of a property name. */
export const FDT_CREATE_FLAG_NO_NAME_DEDUP = 0x1;
const FDT_CREATE_FLAGS_ALL = FDT_CREATE_FLAG_NO_NAME_DEDUP;

/** Where the sequential writer puts the reservation map: the header rounded up to 16 bytes. */
export const FDT_SW_RSVMAP_OFFSET = (FDT_V17_HEADER_SIZE + FDT_RESERVE_ENTRY_SIZE - 1) & ~(FDT_RESERVE_ENTRY_SIZE - 1);

const tagAlign = (n: number): number => (n + 3) & ~3;

/** Names seen before, as bytes (property names repeat across nodes). */
const nameCache = new Map<string, Uint8Array>();
function nameBytes(s: string): Uint8Array {
  let b = nameCache.get(s);
  if (b === undefined) {
    b = cstrBytes(s);
    if (nameCache.size > 4096) nameCache.clear();
    nameCache.set(s, b);
  }
  return b;
}

/**
 * A tree under construction in a buffer of fixed size (fdt_create). The state lives in the header
 * words exactly as libfdt keeps it; the fields below mirror them so a call need not re-read them.
 */
export class FdtSw {
  private buf: Uint8Array;
  private dv: DataView;
  private magic: number;
  private totalsize: number;
  private offStruct: number;
  private sizeStruct = 0;
  private sizeStrings = 0;
  /** 0 in the reservation-map state, totalsize in the structure state. */
  private offStrings = 0;
  private readonly noDedup: boolean;
  /** Structure offsets of the PROP tags written, whose name offsets finish() rebases. */
  private props: number[] = [];
  /**
   * What findString() would return for a name, remembered. A new string only changes the answer
   * for names that are its tail (the search takes the lowest address, where the new string is),
   * so adding one forgets exactly those.
   */
  private readonly found = new Map<string, number>();

  /** fdt_create_with_flags(buf, bufsize, flags): a new zeroed buffer, or the caller's one. */
  constructor(buffer: number | Uint8Array, flags = 0) {
    const bufsize = typeof buffer === 'number' ? buffer : buffer.length;
    if (!Number.isInteger(bufsize) || bufsize < FDT_SW_RSVMAP_OFFSET) {
      throw new FdtError('NOSPACE', 0, `fdt_create: a buffer of ${bufsize} bytes is smaller than the ${FDT_SW_RSVMAP_OFFSET}-byte header`);
    }
    if (bufsize > 0x7fffffff) throw new FdtError('NOSPACE', 0, `fdt_create: ${bufsize} bytes is more than an int`);
    if ((flags & ~FDT_CREATE_FLAGS_ALL) !== 0) throw new FdtError('BADFLAGS', 0, `fdt_create: unknown flags 0x${flags.toString(16)}`);
    this.buf = typeof buffer === 'number' ? new Uint8Array(bufsize) : buffer;
    this.buf.fill(0);
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.noDedup = (flags & FDT_CREATE_FLAG_NO_NAME_DEDUP) !== 0;
    this.magic = FDT_SW_MAGIC;
    this.totalsize = bufsize;
    this.offStruct = FDT_SW_RSVMAP_OFFSET;
    const dv = this.dv;
    dv.setUint32(H_MAGIC, FDT_SW_MAGIC);
    dv.setUint32(H_VERSION, FDT_LAST_SUPPORTED_VERSION);
    dv.setUint32(H_LAST_COMP_VERSION, flags);
    dv.setUint32(H_TOTALSIZE, bufsize);
    dv.setUint32(H_OFF_MEM_RSVMAP, FDT_SW_RSVMAP_OFFSET);
    dv.setUint32(H_OFF_DT_STRUCT, FDT_SW_RSVMAP_OFFSET);
  }

  /** The whole buffer (bufsize bytes), in whatever state libfdt would leave it. */
  get buffer(): Uint8Array {
    return this.buf;
  }

  /** Bytes of the finished tree (header totalsize); BADSTATE before finish(). */
  blob(): Uint8Array {
    if (this.magic !== MAGIC) throw new FdtError('BADSTATE', 0, 'blob: the tree is not finished');
    return this.buf.subarray(0, this.totalsize);
  }

  private probe(what: string): void {
    if (this.magic === MAGIC) throw new FdtError('BADSTATE', 0, `${what}: the tree is already finished`);
  }
  private probeMemrsv(what: string): void {
    this.probe(what);
    if (this.offStrings !== 0) throw new FdtError('BADSTATE', this.offStruct, `${what}: the reservation map is already finished`);
  }
  private probeStruct(what: string): void {
    this.probe(what);
    if (this.offStrings !== this.totalsize) throw new FdtError('BADSTATE', this.offStruct, `${what}: finishReservemap() has not been called`);
  }

  /** fdt_grab_space_: absolute offset of `len` new structure bytes, or -1 when they do not fit. */
  private grab(len: number): number {
    const offset = this.sizeStruct;
    if (offset + len > this.totalsize - this.offStruct - this.sizeStrings) return -1;
    this.sizeStruct = offset + len;
    this.dv.setUint32(HDR_SIZE_DT_STRUCT, offset + len);
    return this.offStruct + offset;
  }

  private nospace(what: string, len: number): FdtError {
    return new FdtError('NOSPACE', this.offStruct + this.sizeStruct,
      `${what}: ${len} more bytes do not fit in the ${this.totalsize}-byte buffer`);
  }

  /** fdt_resize: moves the tree into a new buffer (or a new one of `bufsize` bytes). */
  resize(buffer: number | Uint8Array): void {
    this.probe('resize');
    const bufsize = typeof buffer === 'number' ? buffer : buffer.length;
    const headsize = this.offStruct + this.sizeStruct;
    const tailsize = this.sizeStrings;
    if (headsize + tailsize > this.totalsize) throw new FdtError('INTERNAL', headsize, 'resize: inconsistent tree');
    if (!Number.isInteger(bufsize) || headsize + tailsize > bufsize) {
      throw new FdtError('NOSPACE', headsize, `resize: ${headsize + tailsize} bytes in use do not fit in ${bufsize}`);
    }
    const next = typeof buffer === 'number' ? new Uint8Array(bufsize) : buffer;
    const old = this.buf;
    const oldtail = this.totalsize - tailsize;
    const newtail = bufsize - tailsize;
    const sameMemory = next.buffer === old.buffer;
    if (!sameMemory || next.byteOffset <= old.byteOffset) {
      memmove(next, 0, old, 0, headsize);
      memmove(next, newtail, old, oldtail, tailsize);
    } else {
      memmove(next, newtail, old, oldtail, tailsize);
      memmove(next, 0, old, 0, headsize);
    }
    this.buf = next;
    this.dv = new DataView(next.buffer, next.byteOffset, next.byteLength);
    this.totalsize = bufsize;
    this.dv.setUint32(H_TOTALSIZE, bufsize);
    if (this.offStrings !== 0) {
      this.offStrings = bufsize;
      this.dv.setUint32(H_OFF_DT_STRINGS, bufsize);
    }
  }

  /** fdt_add_reservemap_entry. */
  addReservemapEntry(address: bigint, size: bigint): void {
    this.probeMemrsv('addReservemapEntry');
    const offset = this.offStruct;
    if (offset + FDT_RESERVE_ENTRY_SIZE > this.totalsize) throw this.nospace('addReservemapEntry', FDT_RESERVE_ENTRY_SIZE);
    this.dv.setBigUint64(offset, BigInt.asUintN(64, address));
    this.dv.setBigUint64(offset + 8, BigInt.asUintN(64, size));
    this.offStruct = offset + FDT_RESERVE_ENTRY_SIZE;
    this.dv.setUint32(H_OFF_DT_STRUCT, this.offStruct);
  }

  /** fdt_finish_reservemap: the terminating entry; the structure block starts after it. */
  finishReservemap(): void {
    this.addReservemapEntry(0n, 0n);
    this.offStrings = this.totalsize;
    this.dv.setUint32(H_OFF_DT_STRINGS, this.totalsize);
  }

  /** fdt_begin_node. */
  beginNode(name: string): void {
    this.probeStruct('beginNode');
    const nb = nameBytes(name);
    const at = this.grab(4 + tagAlign(nb.length + 1));
    if (at < 0) throw this.nospace(`beginNode(${JSON.stringify(name)})`, 4 + tagAlign(nb.length + 1));
    this.dv.setUint32(at, BEGIN_NODE);
    this.buf.set(nb, at + 4);
    this.buf[at + 4 + nb.length] = 0;
  }

  /** fdt_end_node. */
  endNode(): void {
    this.probeStruct('endNode');
    const at = this.grab(4);
    if (at < 0) throw this.nospace('endNode', 4);
    this.dv.setUint32(at, END_NODE);
  }

  /** fdt_add_string_: the new string's (negative) offset from the end, or 0 when it does not fit. */
  private addString(s: Uint8Array): number {
    const len = s.length + 1;
    const offset = -this.sizeStrings - len;
    const at = this.totalsize + offset;
    if (at < this.offStruct + this.sizeStruct) return 0;
    this.buf.set(s, at);
    this.buf[at + s.length] = 0;
    this.sizeStrings += len;
    this.dv.setUint32(HDR_SIZE_DT_STRINGS, this.sizeStrings);
    return offset;
  }

  /** fdt_find_string_ over the strings written so far (lowest address first), as an end offset. */
  private findString(s: Uint8Array): number {
    const buf = this.buf;
    const end = this.totalsize;
    const slen = s.length;
    const last = end - slen - 1;
    const first = slen > 0 ? s[0]! : 0;
    for (let p = end - this.sizeStrings; p <= last; p++) {
      if (slen > 0 && buf[p] !== first) continue;
      let i = 0;
      while (i < slen && buf[p + i] === s[i]) i++;
      if (i === slen && buf[p + slen] === 0) return p - end;
    }
    return 0;
  }

  /** Records a new string's offset and forgets the names that are its tail. */
  private remember(name: string, nb: Uint8Array, nameoff: number): void {
    for (const other of this.found.keys()) {
      const ob = nameBytes(other);
      if (ob.length > nb.length) continue;
      let tail = true;
      for (let i = 1; i <= ob.length; i++) if (ob[ob.length - i] !== nb[nb.length - i]) { tail = false; break; }
      if (tail) this.found.delete(other);
    }
    this.found.set(name, nameoff);
  }

  /** fdt_property_placeholder: a property of `len` bytes; returns its value bytes to fill in. */
  propertyPlaceholder(name: string, len: number): Uint8Array {
    const at = this.placeholder(name, len);
    return this.buf.subarray(at, at + len);
  }

  /** fdt_property_placeholder, returning the value's absolute offset. */
  private placeholder(name: string, len: number): number {
    this.probeStruct('property');
    if (!Number.isInteger(len) || len < 0 || len > 0x7fffffff) throw new FdtError('BADVALUE', this.offStruct + this.sizeStruct, `property ${name}: bad length ${len}`);
    const nb = nameBytes(name);
    let nameoff = 0;
    if (!this.noDedup) {
      nameoff = this.found.get(name) ?? 0;
      if (nameoff === 0) {
        nameoff = this.findString(nb);
        if (nameoff !== 0) this.found.set(name, nameoff);
      }
    }
    const allocated = nameoff === 0;
    if (allocated) {
      nameoff = this.addString(nb);
      if (nameoff === 0) throw this.nospace(`property ${JSON.stringify(name)}: name`, nb.length + 1);
      if (!this.noDedup) this.remember(name, nb, nameoff);
    }
    const at = this.grab(12 + tagAlign(len));
    if (at < 0) {
      if (allocated) {
        this.sizeStrings -= nb.length + 1;
        this.dv.setUint32(HDR_SIZE_DT_STRINGS, this.sizeStrings);
        this.found.delete(name);
      }
      throw this.nospace(`property ${JSON.stringify(name)}`, 12 + tagAlign(len));
    }
    const dv = this.dv;
    dv.setUint32(at, PROP);
    dv.setUint32(at + 8, nameoff >>> 0);
    dv.setUint32(at + 4, len);
    this.props.push(at - this.offStruct);
    return at + 12;
  }

  /** fdt_property: a property with the given raw value. */
  property(name: string, value: Uint8Array): void {
    this.buf.set(value, this.placeholder(name, value.length));
  }

  /** fdt_property_string: the string and its NUL. */
  propertyString(name: string, s: string): void {
    const b = cstrBytes(s);
    const at = this.placeholder(name, b.length + 1);
    this.buf.set(b, at);
    this.buf[at + b.length] = 0;
  }

  /** fdt_property_u32 / fdt_property_cell: one big-endian cell. */
  propertyU32(name: string, v: number): void {
    this.dv.setUint32(this.placeholder(name, 4), v >>> 0);
  }

  /** fdt_property_u64: a big-endian u64 (two cells). */
  propertyU64(name: string, v: bigint): void {
    this.dv.setBigUint64(this.placeholder(name, 8), BigInt.asUintN(64, v));
  }

  /** A raw native (little-endian) u64, as KHO stores addresses and sizes. */
  propertyLeU64(name: string, v: bigint): void {
    this.dv.setBigUint64(this.placeholder(name, 8), BigInt.asUintN(64, v), true);
  }

  /** An empty (boolean) property. */
  propertyEmpty(name: string): void {
    this.placeholder(name, 0);
  }

  /**
   * fdt_finish: the FDT_END tag, the strings moved down behind the structure block, every name
   * offset rebased, the header completed. Returns the whole buffer (see blob() for the tree).
   */
  finish(): Uint8Array {
    this.probeStruct('finish');
    const end = this.grab(4);
    if (end < 0) throw this.nospace('finish', 4);
    const dv = this.dv;
    dv.setUint32(end, FDT_END);
    const strSize = this.sizeStrings;
    const oldstr = this.totalsize - strSize;
    const newstr = this.offStruct + this.sizeStruct;
    this.buf.copyWithin(newstr, oldstr, oldstr + strSize);
    this.offStrings = newstr;
    dv.setUint32(H_OFF_DT_STRINGS, newstr);
    const base = this.offStruct;
    for (const p of this.props) {
      const at = base + p + 8;
      dv.setUint32(at, (dv.getUint32(at) + strSize) >>> 0);
    }
    this.props = [];
    this.totalsize = newstr + strSize;
    dv.setUint32(H_TOTALSIZE, this.totalsize);
    dv.setUint32(H_LAST_COMP_VERSION, FDT_LAST_COMPATIBLE_VERSION);
    dv.setUint32(H_MAGIC, MAGIC);
    this.magic = MAGIC;
    return this.buf;
  }
}
