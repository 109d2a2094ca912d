/**
 * User memory as an ioctl argument sees it: a Uint8Array whose bytes are exactly the accessible
 * ones (undefined is a bad pointer). get_user, copy_to_user and copy_struct_from_user
 * (include/linux/uaccess.h, lib/usercopy.c check_zeroed_user) with EFAULT/E2BIG as the kernel.
 */
import { LuoError } from '../errno.ts';

/** A user pointer: the buffer it points into, or undefined for an unmapped address. */
export type UserBuffer = Uint8Array | undefined;

function fault(what: string, off: number, len: number, buf: UserBuffer): LuoError {
  return new LuoError('EFAULT', `${what}: bytes [${off}, ${off + len}) are not accessible (${buf ? `${buf.length}-byte buffer` : 'bad pointer'})`);
}

/** get_user of a u32 at offset 0 (little-endian). */
export function getUserU32(buf: UserBuffer): number {
  if (!buf || buf.length < 4) throw fault('get_user', 0, 4, buf);
  return (buf[0]! | (buf[1]! << 8) | (buf[2]! << 16) | (buf[3]! << 24)) >>> 0;
}

/** get_user of an int at offset 0. */
export function getUserI32(buf: UserBuffer): number {
  return getUserU32(buf) | 0;
}

/** put_user of an int at offset 0. */
export function putUserI32(buf: UserBuffer, v: number): void {
  if (!buf || buf.length < 4) throw fault('put_user', 0, 4, buf);
  new DataView(buf.buffer, buf.byteOffset, 4).setInt32(0, v, true);
}

/**
 * copy_struct_from_user(dst of ksize, src, usize): a larger user struct must have a zero tail
 * (scanned first, in order: a fault gives EFAULT, a nonzero byte E2BIG); a smaller one is
 * zero-extended; then the common prefix is copied (EFAULT when not all accessible).
 */
export function copyStructFromUser(ksize: number, src: UserBuffer, usize: number): Uint8Array {
  const dst = new Uint8Array(ksize);
  const size = Math.min(ksize, usize);
  if (usize > ksize) {
    for (let i = ksize; i < usize; i++) {
      if (!src || i >= src.length) throw fault('copy_struct_from_user (tail)', i, usize - i, src);
      if (src[i] !== 0) throw new LuoError('E2BIG', `the ${usize}-byte argument is larger than the kernel's ${ksize}-byte struct and byte ${i} is not zero`);
    }
  }
  if (!src || src.length < size) throw fault('copy_struct_from_user', 0, size, src);
  dst.set(src.subarray(0, size));
  return dst;
}

/** copy_to_user of `len` bytes of `src` to the start of `dst`. */
export function copyToUser(dst: UserBuffer, src: Uint8Array, len: number): void {
  if (!dst || dst.length < len) throw fault('copy_to_user', 0, len, dst);
  dst.set(src.subarray(0, len));
}
