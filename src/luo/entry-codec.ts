/**
 * Per-entry codecs for the two entries LUO writes and reads by the hundred thousand: struct
 * luo_session_ser (80 bytes) and struct luo_file_ser (64 bytes). Same layout, bytes, values and
 * errors as LuoSessionSer/LuoFileSer.encode/decode (the generic struct codec, which these defer
 * to whenever a value is not plainly valid), without its per-field dispatch, temporary arrays and
 * DataViews.
 */
import { LuoFileSer, LuoSessionSer } from '../abi/luo.ts';

const U64_MAX = 0xffffffffffffffffn;

const isU64 = (v: unknown): v is bigint => typeof v === 'bigint' && v >= 0n && v <= U64_MAX;

/**
 * writeCString (strscpy into a zeroed field) when every code point is 0..255: the C string's bytes
 * are then the code points (stringBytes' Latin-1 case). Returns false, writing nothing, otherwise.
 */
function putLatin1CString(buf: Uint8Array, off: number, size: number, s: string): boolean {
  const len = s.length;
  for (let i = 0; i < len; i++) if (s.charCodeAt(i) > 0xff) return false;
  const n = Math.min(len, size - 1);
  for (let i = 0; i < n; i++) buf[off + i] = s.charCodeAt(i);
  buf.fill(0, off + n, off + size);
  return true;
}

/** readCString: strnlen over the field, then one character per byte. */
function getCString(buf: Uint8Array, off: number, size: number): string {
  let end = off;
  const lim = off + size;
  while (end < lim && buf[end] !== 0) end++;
  return String.fromCharCode.apply(null, buf.subarray(off, end) as unknown as number[]);
}

const dv = (buf: Uint8Array): DataView => new DataView(buf.buffer, buf.byteOffset, buf.byteLength);

const S_NAME = LuoSessionSer.offsets.name;
const S_NAME_LEN = LuoSessionSer.fields.name.size;
const S_FILES = LuoSessionSer.offsets.files;
const S_COUNT = LuoSessionSer.offsets.count;

/** LuoSessionSer.encode({name, files, count}, buf, off). */
export function encodeSessionEntry(buf: Uint8Array, off: number, name: string, files: bigint, count: bigint): void {
  if (off < 0 || off + LuoSessionSer.size > buf.length || typeof name !== 'string' || !isU64(files) || !isU64(count)
    || !putLatin1CString(buf, off + S_NAME, S_NAME_LEN, name)) {
    LuoSessionSer.encode({ name, files, count }, buf, off);
    return;
  }
  const v = dv(buf);
  v.setBigUint64(off + S_FILES, files, true);
  v.setBigUint64(off + S_COUNT, count, true);
}

/** A little-endian u64 of `buf` at `off` (0n without allocating when it is zero). */
function u64At(buf: Uint8Array, off: number): bigint {
  const lo = (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16) | (buf[off + 3]! << 24)) >>> 0;
  const hi = (buf[off + 4]! | (buf[off + 5]! << 8) | (buf[off + 6]! << 16) | (buf[off + 7]! << 24)) >>> 0;
  if (hi === 0) return lo === 0 ? 0n : BigInt(lo);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

/** The name of the luo_session_ser at `off` (the caller checked that the entry lies inside `buf`). */
export const sessionEntryName = (buf: Uint8Array, off: number): string => getCString(buf, off + S_NAME, S_NAME_LEN);

/** Whether the entry's file_set_ser is {0, 0} (no files: nothing to decode). */
export function sessionEntryHasNoFiles(buf: Uint8Array, off: number): boolean {
  for (let i = off + S_FILES; i < off + S_COUNT + 8; i++) if (buf[i] !== 0) return false;
  return true;
}

/** LuoSessionSer.decode(buf, off). */
export function decodeSessionEntry(buf: Uint8Array, off: number): { name: string; files: bigint; count: bigint } {
  if (off < 0 || off + LuoSessionSer.size > buf.length) return LuoSessionSer.decode(buf, off);
  return { name: getCString(buf, off + S_NAME, S_NAME_LEN), files: u64At(buf, off + S_FILES), count: u64At(buf, off + S_COUNT) };
}

const F_COMPAT = LuoFileSer.offsets.compatible;
const F_COMPAT_LEN = LuoFileSer.fields.compatible.size;
const F_DATA = LuoFileSer.offsets.data;
const F_TOKEN = LuoFileSer.offsets.token;

/** LuoFileSer.encode({compatible, data, token}, buf, off). */
export function encodeFileEntry(buf: Uint8Array, off: number, compatible: string, data: bigint, token: bigint): void {
  if (off < 0 || off + LuoFileSer.size > buf.length || typeof compatible !== 'string' || !isU64(data) || !isU64(token)
    || !putLatin1CString(buf, off + F_COMPAT, F_COMPAT_LEN, compatible)) {
    LuoFileSer.encode({ compatible, data, token }, buf, off);
    return;
  }
  const v = dv(buf);
  v.setBigUint64(off + F_DATA, data, true);
  v.setBigUint64(off + F_TOKEN, token, true);
}

/** LuoFileSer.decode(buf, off). */
export function decodeFileEntry(buf: Uint8Array, off: number): { compatible: string; data: bigint; token: bigint } {
  if (off < 0 || off + LuoFileSer.size > buf.length) return LuoFileSer.decode(buf, off);
  return { compatible: getCString(buf, off + F_COMPAT, F_COMPAT_LEN), data: u64At(buf, off + F_DATA), token: u64At(buf, off + F_TOKEN) };
}
