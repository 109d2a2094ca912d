/**
 * The "newc" cpio archive an initramfs is (the kernel's Documentation/driver-api/early-userspace/
 * buffer-format.rst): one 110-byte ASCII header per entry, the name, the data, each padded to 4
 * bytes, then a TRAILER!!! entry. Written here rather than by cpio(1) because a guest needs
 * /dev/console as a character device, which only root could mknod on the host; the format is a
 * few lines and has no options to get wrong.
 */

export type CpioEntry =
  | { readonly kind: 'dir'; readonly path: string; readonly mode?: number }
  | { readonly kind: 'file'; readonly path: string; readonly data: Uint8Array; readonly mode?: number }
  | { readonly kind: 'chardev'; readonly path: string; readonly major: number; readonly minor: number; readonly mode?: number }
  | { readonly kind: 'symlink'; readonly path: string; readonly target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFCHR = 0o020000;
const S_IFLNK = 0o120000;

const hex8 = (n: number): string => (n >>> 0).toString(16).padStart(8, '0');
const pad4 = (n: number): number => (4 - (n % 4)) % 4;

/** The archive of `entries`, in order (parents before children: the kernel makes no directories). */
export function newcArchive(entries: readonly CpioEntry[]): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  let ino = 1;
  const push = (name: string, mode: number, data: Uint8Array, rdevMajor = 0, rdevMinor = 0): void => {
    const nameBytes = enc.encode(`${name}\0`);
    const fields = [ino++, mode, 0, 0, mode & S_IFDIR ? 2 : 1, 0, data.length, 0, 0, rdevMajor, rdevMinor, nameBytes.length, 0];
    const header = enc.encode(`070701${fields.map(hex8).join('')}`);
    parts.push(header, nameBytes, new Uint8Array(pad4(header.length + nameBytes.length)), data, new Uint8Array(pad4(data.length)));
  };
  for (const e of entries) {
    const path = e.path.replace(/^\/+/, '');
    if (!path || path.split('/').some((c) => c === '' || c === '.' || c === '..')) throw new Error(`cpio: "${e.path}" is not a clean relative path`);
    switch (e.kind) {
      case 'dir':
        push(path, S_IFDIR | (e.mode ?? 0o755), new Uint8Array(0));
        break;
      case 'file':
        push(path, S_IFREG | (e.mode ?? 0o644), e.data);
        break;
      case 'chardev':
        push(path, S_IFCHR | (e.mode ?? 0o600), new Uint8Array(0), e.major, e.minor);
        break;
      case 'symlink':
        push(path, S_IFLNK | 0o777, enc.encode(e.target));
        break;
    }
  }
  push('TRAILER!!!', 0, new Uint8Array(0));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
