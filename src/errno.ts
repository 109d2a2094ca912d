/**
 * The one error catalogue of luo: Linux errno names and numbers (x86_64/generic values from
 * include/uapi/asm-generic/errno-base.h and errno.h) and `LuoError`, the typed error every public
 * API throws for an expected failure. The message says what went wrong and where.
 */

/** errno numbers as the kernel defines them (asm-generic). ENOIOCTLCMD is kernel-internal. */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  E2BIG: 7,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  EMFILE: 24,
  ENOTTY: 25,
  EFBIG: 27,
  ENOSPC: 28,
  ESPIPE: 29,
  EPIPE: 32,
  ENODATA: 61,
  EPROTO: 71,
  EOVERFLOW: 75,
  EMSGSIZE: 90,
  EPROTONOSUPPORT: 93,
  EOPNOTSUPP: 95,
  ECONNRESET: 104,
  ETIMEDOUT: 110,
  ECONNREFUSED: 111,
  ESTALE: 116,
  ENOIOCTLCMD: 515,
} as const;

export type ErrnoName = keyof typeof ERRNO;

/** A failure with a kernel errno. `where` names the byte offset, address or object concerned. */
export class LuoError extends Error {
  readonly errno: ErrnoName;
  /** The message without the errno in front (for messages that add their own context). */
  readonly detail: string;
  constructor(errno: ErrnoName, message: string, options?: { cause?: unknown }) {
    super(`${errno}: ${message}`, options);
    this.name = 'LuoError';
    this.errno = errno;
    this.detail = message;
  }
  /** The positive errno number (userspace sees -1 with errno set to this). */
  get code(): number {
    return ERRNO[this.errno];
  }
}

export function errnoName(code: number): ErrnoName | undefined {
  for (const [name, value] of Object.entries(ERRNO)) if (value === code) return name as ErrnoName;
  return undefined;
}

/** True when `e` is a LuoError with the given errno (or any LuoError when none is given). */
export function isLuoError(e: unknown, errno?: ErrnoName): e is LuoError {
  return e instanceof LuoError && (errno === undefined || e.errno === errno);
}
