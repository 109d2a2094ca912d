/**
 * The data syscalls on an fd table (fs/read_write.c, fs/open.c): the FMODE gates (EBADF for the
 * wrong access mode, ESPIPE without positions, EINVAL without the operation) in the kernel's order,
 * then the memfd model or the file type's own operation. Each throws a LuoError on failure.
 */
import { LuoError } from '../errno.ts';
import { MemfdFile } from '../handlers/memfd-file.ts';
import type { FdTable } from './fdtable.ts';
import { fileFlags, O_APPEND, type OpenFile, pathOf, PipeFile } from './file.ts';

/** SEEK_HOLE: the largest whence ksys_lseek passes on. */
const SEEK_MAX = 4;

function get(fds: FdTable, fd: number): OpenFile {
  const e = fds.get(fd);
  if (!e) throw new LuoError('EBADF', `fd ${fd} is not open`);
  return e.file;
}

function readable(fds: FdTable, fd: number): OpenFile {
  const f = get(fds, fd);
  if (!(f instanceof MemfdFile) && !f.modes.read) throw new LuoError('EBADF', `fd ${fd} is not open for reading`);
  return f;
}

function writable(fds: FdTable, fd: number): OpenFile {
  const f = get(fds, fd);
  if (!(f instanceof MemfdFile) && !f.modes.write) throw new LuoError('EBADF', `fd ${fd} is not open for writing`);
  return f;
}

function positional(f: OpenFile, op: string): void {
  if (!(f instanceof MemfdFile) && !f.modes.positional) throw new LuoError('ESPIPE', `${op}: ${pathOf(f)} has no positions`);
}

export function read(fds: FdTable, fd: number, buf: Uint8Array): number {
  const data = readable(fds, fd).read(buf.length);
  buf.set(data);
  return data.length;
}

export function write(fds: FdTable, fd: number, bytes: Uint8Array): number {
  const f = writable(fds, fd);
  if (f instanceof MemfdFile && fileFlags(f) & O_APPEND) {
    const end = f.stat().size;
    const n = f.pwrite(bytes, end);
    f.pos = end + n;
    return n;
  }
  return f.write(bytes);
}

export function pread(fds: FdTable, fd: number, buf: Uint8Array, off: number): number {
  if (off < 0) throw new LuoError('EINVAL', `pread: offset ${off} is negative`);
  const f = get(fds, fd);
  positional(f, 'pread');
  readable(fds, fd);
  const data = f instanceof MemfdFile ? f.pread(buf.length, off) : f.read(buf.length);
  buf.set(data);
  return data.length;
}

export function pwrite(fds: FdTable, fd: number, bytes: Uint8Array, off: number): number {
  if (off < 0) throw new LuoError('EINVAL', `pwrite: offset ${off} is negative`);
  const f = get(fds, fd);
  positional(f, 'pwrite');
  writable(fds, fd);
  return f instanceof MemfdFile ? f.pwrite(bytes, off) : f.write(bytes);
}

export function lseek(fds: FdTable, fd: number, off: number, whence: number): number {
  const f = get(fds, fd);
  if (!Number.isInteger(whence) || whence < 0 || whence > SEEK_MAX) throw new LuoError('EINVAL', `lseek: whence ${whence}`);
  return f instanceof MemfdFile ? f.lseek(off, whence) : f.llseek(off, whence);
}

/** ksys_ftruncate: the length is checked before the fd; only regular files (memfds) qualify. */
export function ftruncate(fds: FdTable, fd: number, len: number): number {
  if (len < 0) throw new LuoError('EINVAL', `ftruncate: length ${len} is negative`);
  const f = get(fds, fd);
  if (!(f instanceof MemfdFile)) throw new LuoError('EINVAL', `ftruncate: ${pathOf(f)} is not a regular file`);
  f.ftruncate(len);
  return 0;
}

/** vfs_fallocate: the range, write access, then the file type (FIFO: ESPIPE, not regular: ENODEV). */
export function fallocate(fds: FdTable, fd: number, mode: number, off: number, len: number): number {
  const f = get(fds, fd);
  if (f instanceof MemfdFile) {
    f.fallocate(off, len, mode);
    return 0;
  }
  if (off < 0 || len <= 0) throw new LuoError('EINVAL', `fallocate: bad range offset ${off} length ${len}`);
  if (!f.modes.write) throw new LuoError('EBADF', `fallocate: fd ${fd} is not open for writing`);
  if (f instanceof PipeFile) throw new LuoError('ESPIPE', 'fallocate: a pipe');
  throw new LuoError('ENODEV', `fallocate: ${pathOf(f)} is not a regular file`);
}
