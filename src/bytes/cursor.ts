/**
 * Bounds-checked byte readers and writers over a Uint8Array, in either byte order. ABI structs in
 * KHO/LUO are little-endian (native x86_64/arm64), FDT cells are big-endian. u64 values are bigint.
 * An access out of bounds throws a `BoundsError` naming the offset, never a RangeError from V8.
 */

export type Endian = 'le' | 'be';

export class BoundsError extends Error {
  readonly offset: number;
  constructor(what: string, offset: number, length: number, limit: number) {
    super(`${what}: ${length} byte(s) at offset ${offset} run past the end (${limit} bytes)`);
    this.name = 'BoundsError';
    this.offset = offset;
  }
}

export function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

function check(buf: Uint8Array, offset: number, len: number, what: string): void {
  if (!Number.isInteger(offset) || offset < 0 || offset + len > buf.length) {
    throw new BoundsError(what, offset, len, buf.length);
  }
}

// ---- free functions (hot paths use these directly) ----

export function readU8(buf: Uint8Array, off: number): number {
  check(buf, off, 1, 'u8');
  return buf[off]!;
}
export function readU16(buf: Uint8Array, off: number, e: Endian): number {
  check(buf, off, 2, 'u16');
  return view(buf).getUint16(off, e === 'le');
}
export function readU32(buf: Uint8Array, off: number, e: Endian): number {
  check(buf, off, 4, 'u32');
  return view(buf).getUint32(off, e === 'le');
}
export function readI32(buf: Uint8Array, off: number, e: Endian): number {
  check(buf, off, 4, 's32');
  return view(buf).getInt32(off, e === 'le');
}
export function readU64(buf: Uint8Array, off: number, e: Endian): bigint {
  check(buf, off, 8, 'u64');
  return view(buf).getBigUint64(off, e === 'le');
}
export function writeU8(buf: Uint8Array, off: number, v: number): void {
  check(buf, off, 1, 'u8');
  buf[off] = v & 0xff;
}
export function writeU16(buf: Uint8Array, off: number, v: number, e: Endian): void {
  check(buf, off, 2, 'u16');
  view(buf).setUint16(off, v, e === 'le');
}
export function writeU32(buf: Uint8Array, off: number, v: number, e: Endian): void {
  check(buf, off, 4, 'u32');
  view(buf).setUint32(off, v >>> 0, e === 'le');
}
export function writeI32(buf: Uint8Array, off: number, v: number, e: Endian): void {
  check(buf, off, 4, 's32');
  view(buf).setInt32(off, v | 0, e === 'le');
}
export function writeU64(buf: Uint8Array, off: number, v: bigint, e: Endian): void {
  check(buf, off, 8, 'u64');
  view(buf).setBigUint64(off, BigInt.asUintN(64, v), e === 'le');
}

const utf8 = new TextEncoder();

/**
 * Bytes to a string, one character per byte (ISO-8859-1). TextDecoder('latin1') would not do:
 * the WHATWG encoding standard maps that label to windows-1252, which changes 0x80..0x9f.
 */
export function latin1String(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return s;
}

/** Reads a NUL-terminated string stored in a fixed field of `size` bytes (strnlen semantics). */
export function readCString(buf: Uint8Array, off: number, size: number): string {
  check(buf, off, size, `char[${size}]`);
  let end = off;
  const lim = off + size;
  while (end < lim && buf[end] !== 0) end++;
  return latin1String(buf.subarray(off, end));
}

/** Bytes of a string as the kernel sees a C string (Latin-1 for 0..255 code points, else UTF-8). */
export function stringBytes(s: string): Uint8Array {
  let narrow = true;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) { narrow = false; break; }
  if (!narrow) return utf8.encode(s);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

/**
 * Writes `s` into a fixed field of `size` bytes, NUL-padded, as strscpy into a zeroed page does:
 * at most size-1 bytes of text, always terminated. Returns false when the text was truncated.
 */
export function writeCString(buf: Uint8Array, off: number, size: number, s: string): boolean {
  check(buf, off, size, `char[${size}]`);
  const b = stringBytes(s);
  const n = Math.min(b.length, size - 1);
  buf.set(b.subarray(0, n), off);
  buf.fill(0, off + n, off + size);
  return n === b.length;
}

/** A sequential reader with a position. */
export class ByteReader {
  pos: number;
  constructor(readonly buf: Uint8Array, readonly endian: Endian, pos = 0) {
    this.pos = pos;
  }
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  u8(): number { const v = readU8(this.buf, this.pos); this.pos += 1; return v; }
  u16(): number { const v = readU16(this.buf, this.pos, this.endian); this.pos += 2; return v; }
  u32(): number { const v = readU32(this.buf, this.pos, this.endian); this.pos += 4; return v; }
  i32(): number { const v = readI32(this.buf, this.pos, this.endian); this.pos += 4; return v; }
  u64(): bigint { const v = readU64(this.buf, this.pos, this.endian); this.pos += 8; return v; }
  bytes(n: number): Uint8Array {
    check(this.buf, this.pos, n, 'bytes');
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  cstring(size: number): string { const v = readCString(this.buf, this.pos, size); this.pos += size; return v; }
}

/** A sequential writer into a growable buffer (or a fixed one when `fixed` is set). */
export class ByteWriter {
  private buf: Uint8Array;
  pos = 0;
  constructor(readonly endian: Endian, initial = 256, private readonly fixed = false) {
    this.buf = new Uint8Array(initial);
  }
  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    if (this.fixed) throw new BoundsError('write', this.pos, n, this.buf.length);
    let size = this.buf.length * 2 || 64;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf);
    this.buf = next;
  }
  u8(v: number): this { this.ensure(1); writeU8(this.buf, this.pos, v); this.pos += 1; return this; }
  u16(v: number): this { this.ensure(2); writeU16(this.buf, this.pos, v, this.endian); this.pos += 2; return this; }
  u32(v: number): this { this.ensure(4); writeU32(this.buf, this.pos, v, this.endian); this.pos += 4; return this; }
  i32(v: number): this { this.ensure(4); writeI32(this.buf, this.pos, v, this.endian); this.pos += 4; return this; }
  u64(v: bigint): this { this.ensure(8); writeU64(this.buf, this.pos, v, this.endian); this.pos += 8; return this; }
  bytes(b: Uint8Array): this { this.ensure(b.length); this.buf.set(b, this.pos); this.pos += b.length; return this; }
  cstring(size: number, s: string): this { this.ensure(size); writeCString(this.buf, this.pos, size, s); this.pos += size; return this; }
  zeros(n: number): this { this.ensure(n); this.buf.fill(0, this.pos, this.pos + n); this.pos += n; return this; }
  /** The bytes written so far (a copy). */
  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }
}
