/**
 * Declarative packed-struct codec: describe an ABI struct once (fields in order, their types, the
 * total size) and get its field offsets, a typed decoder and an encoder. Mirrors the kernel's
 * `__packed` ABI structs; the declared size is checked against the fields when the layout is built.
 */
import {
  type Endian,
  BoundsError,
  readCString,
  readI32,
  readU16,
  readU32,
  readU64,
  readU8,
  writeCString,
  writeI32,
  writeU16,
  writeU32,
  writeU64,
  writeU8,
} from './cursor.ts';

export type FieldType =
  | { readonly kind: 'u8'; readonly size: 1 }
  | { readonly kind: 'u16'; readonly size: 2 }
  | { readonly kind: 'u32'; readonly size: 4 }
  | { readonly kind: 's32'; readonly size: 4 }
  | { readonly kind: 'u64'; readonly size: 8 }
  | { readonly kind: 'cstr'; readonly size: number }
  | { readonly kind: 'bytes'; readonly size: number }
  | { readonly kind: 'pad'; readonly size: number };

export const u8 = { kind: 'u8', size: 1 } as const;
export const u16 = { kind: 'u16', size: 2 } as const;
export const u32 = { kind: 'u32', size: 4 } as const;
export const s32 = { kind: 's32', size: 4 } as const;
export const u64 = { kind: 'u64', size: 8 } as const;
/** A fixed char[size] holding a NUL-terminated, NUL-padded string. */
export const cstr = (size: number) => ({ kind: 'cstr', size }) as const;
/** Raw bytes of a fixed size. */
export const bytes = (size: number) => ({ kind: 'bytes', size }) as const;
/** Padding that is written as zeros and not decoded. */
export const pad = (size: number) => ({ kind: 'pad', size }) as const;

type ValueOf<T extends FieldType> = T extends { kind: 'u64' }
  ? bigint
  : T extends { kind: 'cstr' }
    ? string
    : T extends { kind: 'bytes' }
      ? Uint8Array
      : number;

export type Fields = Readonly<Record<string, FieldType>>;

/** The decoded value of a struct: one property per non-padding field. */
export type StructValue<F extends Fields> = {
  -readonly [K in keyof F as F[K] extends { kind: 'pad' } ? never : K]: ValueOf<F[K]>;
};

export interface StructLayout<F extends Fields> {
  readonly name: string;
  readonly endian: Endian;
  readonly size: number;
  readonly fields: F;
  /** Byte offset of each field, padding included. */
  readonly offsets: { readonly [K in keyof F]: number };
  decode(buf: Uint8Array, off?: number): StructValue<F>;
  /** Writes `value` at `off` in `buf` (a fresh zeroed buffer of `size` bytes when none is given). */
  encode(value: StructValue<F>, buf?: Uint8Array, off?: number): Uint8Array;
}

function readField(t: FieldType, buf: Uint8Array, off: number, e: Endian): unknown {
  switch (t.kind) {
    case 'u8': return readU8(buf, off);
    case 'u16': return readU16(buf, off, e);
    case 'u32': return readU32(buf, off, e);
    case 's32': return readI32(buf, off, e);
    case 'u64': return readU64(buf, off, e);
    case 'cstr': return readCString(buf, off, t.size);
    case 'bytes': return buf.slice(off, off + t.size);
    case 'pad': return undefined;
  }
}

function writeField(t: FieldType, buf: Uint8Array, off: number, e: Endian, v: unknown, where: string): void {
  switch (t.kind) {
    case 'u8': return writeU8(buf, off, num(v, where, 0xff));
    case 'u16': return writeU16(buf, off, num(v, where, 0xffff), e);
    case 'u32': return writeU32(buf, off, num(v, where, 0xffffffff), e);
    case 's32': {
      const n = Number(v);
      if (!Number.isInteger(n) || n < -0x80000000 || n > 0x7fffffff) throw new RangeError(`${where}: ${String(v)} is not an s32`);
      return writeI32(buf, off, n, e);
    }
    case 'u64': {
      if (typeof v !== 'bigint' || v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`${where}: ${String(v)} is not a u64 bigint`);
      return writeU64(buf, off, v, e);
    }
    case 'cstr': {
      if (typeof v !== 'string') throw new TypeError(`${where}: expected a string`);
      writeCString(buf, off, t.size, v);
      return;
    }
    case 'bytes': {
      if (!(v instanceof Uint8Array) || v.length > t.size) throw new RangeError(`${where}: expected at most ${t.size} bytes`);
      buf.set(v, off);
      buf.fill(0, off + v.length, off + t.size);
      return;
    }
    case 'pad':
      buf.fill(0, off, off + t.size);
      return;
  }
}

function num(v: unknown, where: string, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new RangeError(`${where}: ${String(v)} out of range 0..${max}`);
  return v;
}

/**
 * Builds a layout. Fields are packed in declaration order; `size` is the kernel's sizeof and must
 * equal the sum of the field sizes (add explicit `pad` fields for any hole or tail).
 */
export function defineStruct<const F extends Fields>(
  name: string,
  endian: Endian,
  fields: F,
  size: number,
): StructLayout<F> {
  const offsets: Record<string, number> = {};
  const entries = Object.entries(fields);
  let off = 0;
  for (const [k, t] of entries) {
    offsets[k] = off;
    off += t.size;
  }
  if (off !== size) throw new Error(`struct ${name}: fields add up to ${off} bytes, declared sizeof is ${size}`);
  return {
    name,
    endian,
    size,
    fields,
    offsets: offsets as { [K in keyof F]: number },
    decode(buf, at = 0) {
      if (at < 0 || at + size > buf.length) throw new BoundsError(`struct ${name}`, at, size, buf.length);
      const out: Record<string, unknown> = {};
      for (const [k, t] of entries) if (t.kind !== 'pad') out[k] = readField(t, buf, at + offsets[k]!, endian);
      return out as StructValue<F>;
    },
    encode(value, buf, at = 0) {
      const target = buf ?? new Uint8Array(size);
      if (at < 0 || at + size > target.length) throw new BoundsError(`struct ${name}`, at, size, target.length);
      const v = value as Record<string, unknown>;
      for (const [k, t] of entries) writeField(t, target, at + offsets[k]!, endian, v[k], `${name}.${k}`);
      return target;
    },
  };
}
