/**
 * User memory as an ioctl argument sees it: a Uint8Array whose bytes are exactly the accessible
 * ones (undefined is a bad pointer), or such bytes followed by a tail a client scanned without
 * sending it (a huge zero-tailed struct, protocol §4.3). get_user, copy_to_user and
 * copy_struct_from_user (include/linux/uaccess.h, lib/usercopy.c check_zeroed_user) with
 * EFAULT/E2BIG as the kernel.
 */
import { LuoError } from '../errno.ts';

/**
 * What follows the bytes of a tailed buffer: `zero` — accessible zero bytes up to `end`, then a
 * fault; `nonzero` — a nonzero byte comes before any fault.
 */
export type UserTail = { readonly kind: 'zero'; readonly end: number } | { readonly kind: 'nonzero' };

/**
 * User memory described more closely than by its bytes: `tail` is what a client found past them;
 * `readOnly` memory can be read but every write to it faults (a PROT_READ mapping).
 */
export interface UserMemory {
  readonly bytes: Uint8Array;
  readonly tail?: UserTail;
  readonly readOnly?: boolean;
}

/** A user pointer: the buffer it points into, or undefined for an unmapped address. */
export type UserBuffer = Uint8Array | UserMemory | undefined;

/** The bytes a pointer reaches directly (a tail is only looked at by copy_struct_from_user). */
function bytesOf(buf: UserBuffer): Uint8Array | undefined {
  return buf === undefined || buf instanceof Uint8Array ? buf : buf.bytes;
}

/** The bytes a write through the pointer may change (none for read-only memory). */
function writableBytes(buf: UserBuffer): Uint8Array | undefined {
  return buf === undefined || buf instanceof Uint8Array ? buf : buf.readOnly ? undefined : buf.bytes;
}

function fault(what: string, off: number, len: number, buf: Uint8Array | undefined): LuoError {
  return new LuoError('EFAULT', `${what}: bytes [${off}, ${off + len}) are not accessible (${buf ? `${buf.length}-byte buffer` : 'bad pointer'})`);
}

/** get_user of a u32 at offset 0 (little-endian). */
export function getUserU32(ubuf: UserBuffer): number {
  const buf = bytesOf(ubuf);
  if (!buf || buf.length < 4) throw fault('get_user', 0, 4, buf);
  return (buf[0]! | (buf[1]! << 8) | (buf[2]! << 16) | (buf[3]! << 24)) >>> 0;
}

/** get_user of an int at offset 0. */
export function getUserI32(buf: UserBuffer): number {
  return getUserU32(buf) | 0;
}

/** put_user of an int at offset 0. */
export function putUserI32(ubuf: UserBuffer, v: number): void {
  const buf = writableBytes(ubuf);
  if (!buf || buf.length < 4) throw fault('put_user', 0, 4, buf);
  new DataView(buf.buffer, buf.byteOffset, 4).setInt32(0, v, true);
}

/** put_user of a loff_t (s64) at offset 0. */
export function putUserI64(ubuf: UserBuffer, v: bigint): void {
  const buf = writableBytes(ubuf);
  if (!buf || buf.length < 8) throw fault('put_user', 0, 8, buf);
  new DataView(buf.buffer, buf.byteOffset, 8).setBigInt64(0, v, true);
}

/**
 * copy_struct_from_user(dst of ksize, src, usize): a larger user struct must have a zero tail
 * (scanned first, in order: a fault gives EFAULT, a nonzero byte E2BIG); a smaller one is
 * zero-extended; then the common prefix is copied (EFAULT when not all accessible).
 */
export function copyStructFromUser(ksize: number, usrc: UserBuffer, usize: number): Uint8Array {
  const src = bytesOf(usrc);
  const dst = new Uint8Array(ksize);
  const size = Math.min(ksize, usize);
  if (usize > ksize) {
    const have = Math.min(usize, src?.length ?? 0);
    for (let i = ksize; i < have; i++) {
      if (src![i] !== 0) throw new LuoError('E2BIG', `the ${usize}-byte argument is larger than the kernel's ${ksize}-byte struct and byte ${i} is not zero`);
    }
    if (have < usize) {
      const tail = usrc === undefined || usrc instanceof Uint8Array ? undefined : usrc.tail;
      if (tail?.kind === 'nonzero') throw new LuoError('E2BIG', `the ${usize}-byte argument is larger than the kernel's ${ksize}-byte struct and has a nonzero byte past offset ${have}`);
      const end = tail?.kind === 'zero' ? Math.max(tail.end, have) : have;
      if (end < usize) throw fault('copy_struct_from_user (tail)', end, usize - end, src);
    }
  }
  if (!src || src.length < size) throw fault('copy_struct_from_user', 0, size, src);
  dst.set(src.subarray(0, size));
  return dst;
}

/** copy_to_user of `len` bytes of `src` to the start of `dst`. */
export function copyToUser(udst: UserBuffer, src: Uint8Array, len: number): void {
  const dst = writableBytes(udst);
  if (!dst || dst.length < len) throw fault('copy_to_user', 0, len, dst);
  dst.set(src.subarray(0, len));
}
