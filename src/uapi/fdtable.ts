/**
 * A process's file descriptor table (fs/file.c): slots pointing at open files, the close-on-exec
 * bit per slot, lowest-free allocation below RLIMIT_NOFILE (EMFILE), reservations that are either
 * installed or put back (get_unused_fd_flags / fd_install / put_unused_fd).
 */
import { LuoError } from '../errno.ts';
import type { OpenFile } from './file.ts';

export interface FdEntry {
  readonly file: OpenFile;
  cloexec: boolean;
}

const RESERVED = 'reserved' as const;

export class FdTable {
  private readonly slots: Array<FdEntry | typeof RESERVED | undefined> = [];
  /** files->next_fd: no slot below it is free. */
  private nextFd = 0;
  /** The O_CLOEXEC of reservations not installed yet. */
  private readonly pendingCloexec = new Map<number, boolean>();

  /**
   * alloc_fd(start, end): the lowest free fd >= start, reserved; EMFILE when it would be >= end
   * (end is RLIMIT_NOFILE's soft limit).
   */
  alloc(start: number, end: number, cloexec: boolean): number {
    let fd = Math.max(start, this.nextFd);
    while (fd < this.slots.length && this.slots[fd] !== undefined) fd++;
    if (fd >= end) throw new LuoError('EMFILE', `no free fd below RLIMIT_NOFILE (${end})`);
    this.slots[fd] = RESERVED;
    if (start <= this.nextFd) this.nextFd = fd + 1;
    this.pendingCloexec.set(fd, cloexec);
    return fd;
  }
  /** fd_install: the reserved slot now points at `file` (the caller's reference moves in). */
  install(fd: number, file: OpenFile): void {
    if (this.slots[fd] !== RESERVED) throw new Error(`fd_install(${fd}): the fd was not reserved`);
    this.slots[fd] = { file, cloexec: this.pendingCloexec.get(fd) ?? false };
    this.pendingCloexec.delete(fd);
  }

  /** put_unused_fd: a reservation given back. */
  putUnused(fd: number): void {
    if (this.slots[fd] !== RESERVED) throw new Error(`put_unused_fd(${fd}): the fd was not reserved`);
    this.slots[fd] = undefined;
    this.pendingCloexec.delete(fd);
    if (fd < this.nextFd) this.nextFd = fd;
    this.trim();
  }

  /** The open file at `fd` (reserved slots are not open). */
  get(fd: number): FdEntry | undefined {
    if (!Number.isInteger(fd) || fd < 0) return undefined;
    const e = this.slots[fd];
    return e === RESERVED ? undefined : e;
  }

  /** Removes the entry at `fd` and hands back its file (the caller then drops the reference). */
  remove(fd: number): OpenFile | undefined {
    const e = this.get(fd);
    if (!e) return undefined;
    this.slots[fd] = undefined;
    if (fd < this.nextFd) this.nextFd = fd;
    this.trim();
    return e.file;
  }

  /** do_dup2's replace: `fd` (below the limit) points at `file` now; returns what it pointed at. */
  replace(fd: number, file: OpenFile, cloexec: boolean): OpenFile | undefined {
    const old = this.get(fd);
    if (this.slots[fd] === RESERVED) throw new LuoError('EBUSY', `dup2: fd ${fd} is being installed`);
    this.slots[fd] = { file, cloexec };
    return old?.file;
  }

  /** Open fds in ascending order. */
  *entries(): IterableIterator<[number, FdEntry]> {
    for (let fd = 0; fd < this.slots.length; fd++) {
      const e = this.slots[fd];
      if (e && e !== RESERVED) yield [fd, e];
    }
  }

  get openCount(): number {
    let n = 0;
    for (const e of this.slots) if (e && e !== RESERVED) n++;
    return n;
  }

  private trim(): void {
    while (this.slots.length > 0 && this.slots[this.slots.length - 1] === undefined) this.slots.pop();
  }
}
