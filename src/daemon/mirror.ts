/**
 * Memfds of real client programs as the simulated kernel sees them: a simulated memfd standing in
 * for each real one a client preserves (docs/protocol.md 5.2). Size and seals are taken at
 * PRESERVE_FD (memfd_luo_preserve freezes the size and records the seals); contents and position
 * are refreshed from the real file at kexec, before LUO's reboot path freezes and serializes.
 * The daemon holds its own fd on the real inode, as LUO holds a file reference.
 */
import { closeSync, constants, fstatSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, statfsSync, statSync } from 'node:fs';
import { LuoError } from '../errno.ts';
import { PAGE_SIZE } from '../abi/kho.ts';
import { MemfdFile, MFD_ALLOW_SEALING, memfdCreate, type MemfdContext } from '../handlers/memfd-file.ts';
import { NullFile, O_RDONLY, type OpenFile } from '../uapi/file.ts';
import { SEALS_UNKNOWN, SRC } from './wire.ts';

/** Where a mirrored memfd's bytes come from. */
export type MirrorSource =
  | { readonly kind: 'proc'; readonly pid: number; readonly fd: number; readonly hiddenFd: number; readonly realFd: number; readonly key: string }
  | { readonly kind: 'path'; readonly path: string; readonly realFd: number; readonly key: string }
  | { readonly kind: 'buffer' };

export interface Mirror {
  readonly file: MemfdFile;
  readonly source: MirrorSource;
  /** A file RETRIEVE_FD handed out (the client's memfd is bound to it): never captured at kexec. */
  readonly retrieved?: boolean;
  /** i_size taken at preserve. */
  readonly size: number;
  /** f_pos as last known. */
  pos: number;
}

export interface PreserveSource {
  readonly kind: number;
  readonly pid: number;
  readonly fd: number;
  readonly hiddenFd: number;
  readonly seals: number;
  readonly pos: bigint;
  readonly bytes: Uint8Array;
}

/** statfs f_type of tmpfs/shmem (memfds, /dev/shm) and of hugetlbfs (MFD_HUGETLB memfds). */
export const TMPFS_MAGIC = 0x01021994;
export const HUGETLBFS_MAGIC = 0x958458f6;

/**
 * What memfd_luo's can_preserve decides for the file open at `link` (a /proc/<pid>/fd/<fd> magic
 * link): 'shmem' for a shmem file without links (`shmem_file(file) && !inode->i_nlink`: memfds,
 * an O_TMPFILE or unlinked file on tmpfs), 'other' for anything no handler takes (hugetlbfs memfds,
 * linked files, sockets, pipes, devices), undefined when the fd is not open. Regular files only:
 * the fd is then opened by the daemon, which must never block on a FIFO or fail on a socket.
 */
export function classifyProcFd(link: string): 'shmem' | 'other' | undefined {
  let type: number;
  try {
    readlinkSync(link);
  } catch {
    return undefined;
  }
  try {
    type = Number(statfsSync(link).type) >>> 0;
    const st = statSync(link);
    return type === TMPFS_MAGIC && st.isFile() && st.nlink === 0 ? 'shmem' : 'other';
  } catch {
    return 'other';
  }
}

/**
 * Opens `path` for reading only if it is a regular file, without ever blocking: a FIFO, socket or
 * device is refused before it is opened (the open of a FIFO would wait for a writer and stall
 * every client), and O_NONBLOCK|O_NOCTTY cover a swap between the check and the open, which the
 * fstat afterwards catches. Returns the fd, or undefined for anything but a regular file; throws
 * what open or stat throws for a missing or unreadable path.
 */
export function openRegular(path: string): number | undefined {
  if (!statSync(path).isFile()) return undefined;
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    if (fstatSync(fd).isFile()) return fd;
  } catch {
    /* fall through */
  }
  closeSync(fd);
  return undefined;
}

/** A name for the simulated memfd: at most 200 UTF-8 bytes (memfd names are limited), from the end. */
function simName(s: string): string {
  let out = s.replace(/\0/g, '');
  while (new TextEncoder().encode(out).length > 200) out = out.slice(1);
  return out;
}

/** The position of an open fd, from /proc/<pid>/fdinfo/<fd>, if it still refers to `key`. */
function procPos(pid: number, fd: number, key: string): number | undefined {
  try {
    const st = statSync(`/proc/${pid}/fd/${fd}`);
    if (`${st.dev}:${st.ino}` !== key) return undefined;
    const m = /^pos:\s*(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export class MirrorTable {
  /** Live mirrors of real inodes, by "dev:ino": the same real memfd is one simulated file (EBUSY). */
  private readonly byKey = new Map<string, Mirror>();
  private readonly all = new Set<Mirror>();

  constructor(
    private readonly ctx: () => MemfdContext,
    private readonly log: (level: 'info' | 'warn', msg: string) => void,
    /** Pids of client processes the daemon knows (looked at first for a lost position). */
    private readonly knownPids: () => Iterable<number> = () => [],
  ) {}

  get size(): number {
    return this.all.size;
  }

  /**
   * The simulated open file a PRESERVE_FD source names (a new reference the caller closes), or
   * undefined when the fd is not open (EBADF). Files no handler takes become /dev/null-like files
   * (ENOENT from can_preserve, in the kernel's order).
   */
  resolve(src: PreserveSource): OpenFile | undefined {
    switch (src.kind) {
      case SRC.PROC_FD:
        return this.resolveProc(src);
      case SRC.PATH:
        return this.resolvePath(src);
      case SRC.BUFFER: {
        const f = this.makeFile('buffer', src.bytes.length, src.seals, Number(src.pos), src.bytes);
        this.add({ file: f, source: { kind: 'buffer' }, size: src.bytes.length, pos: Number(src.pos) });
        return f;
      }
      default:
        throw new LuoError('EPROTO', `PRESERVE_FD: no source given (src_kind ${src.kind})`);
    }
  }

  private resolveProc(src: PreserveSource): OpenFile | undefined {
    if (src.pid <= 0 || src.fd < 0) return undefined; // not open: EBADF
    const link = `/proc/${src.pid}/fd/${src.fd}`;
    const kind = classifyProcFd(link);
    if (kind === undefined) return undefined; // not open (or no such process): EBADF
    if (kind === 'other') return new NullFile(O_RDONLY); // no handler takes it: ENOENT, in the kernel's order
    let target = '';
    let realFd: number | undefined;
    try {
      target = readlinkSync(link);
      realFd = openRegular(link);
    } catch (e) {
      this.log('warn', `luod: cannot open ${link} (${target}): ${(e as Error).message}; treating it as a file no handler takes`);
      return new NullFile(O_RDONLY);
    }
    if (realFd === undefined) return new NullFile(O_RDONLY); // replaced by something else since the check
    const st = fstatSync(realFd);
    if (st.nlink !== 0) {
      closeSync(realFd);
      return new NullFile(O_RDONLY);
    }
    const key = `${st.dev}:${st.ino}`;
    const existing = this.live(key);
    if (existing) {
      closeSync(realFd);
      return existing.file.get();
    }
    const pos = procPos(src.pid, src.fd, key) ?? 0;
    const name = simName(target.replace(/^\/memfd:/, '').replace(/ \(deleted\)$/, ''));
    const f = this.makeFile(name, st.size, src.seals, pos);
    this.add({ file: f, source: { kind: 'proc', pid: src.pid, fd: src.fd, hiddenFd: src.hiddenFd, realFd, key }, size: st.size, pos }, key);
    return f;
  }

  private resolvePath(src: PreserveSource): OpenFile | undefined {
    const path = new TextDecoder().decode(src.bytes);
    let realFd: number | undefined;
    try {
      realFd = openRegular(path);
    } catch (e) {
      throw new LuoError('ENOENT', `PRESERVE_FD: cannot open ${path}: ${(e as Error).message}`);
    }
    // A FIFO, socket or device: no handler takes it (ENOENT from can_preserve, in the kernel's order).
    if (realFd === undefined) return new NullFile(O_RDONLY);
    const st = fstatSync(realFd);
    const key = `${st.dev}:${st.ino}`;
    const existing = this.live(key);
    if (existing) {
      closeSync(realFd);
      return existing.file.get();
    }
    const f = this.makeFile(simName(path), st.size, src.seals, Number(src.pos));
    this.add({ file: f, source: { kind: 'path', path, realFd, key }, size: st.size, pos: Number(src.pos) }, key);
    return f;
  }

  /**
   * RETRIEVE_FD gave the client's memfd (pid, fd) the contents of `file`: from now on that real inode
   * is this simulated file, so a PRESERVE_FD of it finds the file LUO still holds (EBUSY until the
   * session is finished; luo_file.c keys incoming files too). The binding goes when the file does.
   */
  bindRetrieved(file: MemfdFile, pid: number, fd: number): void {
    const link = `/proc/${pid}/fd/${fd}`;
    let realFd: number | undefined;
    try {
      realFd = openRegular(link);
    } catch (e) {
      this.log('warn', `luod: cannot open ${link} to bind a retrieved memfd: ${(e as Error).message}`);
      return;
    }
    if (realFd === undefined) return; // not a memfd: nothing to bind
    const st = fstatSync(realFd);
    const key = `${st.dev}:${st.ino}`;
    if (this.live(key)) {
      closeSync(realFd);
      return;
    }
    this.add({ file, source: { kind: 'proc', pid, fd, hiddenFd: -1, realFd, key }, size: file.inode.size, pos: file.pos, retrieved: true }, key);
  }

  private live(key: string): Mirror | undefined {
    const m = this.byKey.get(key);
    if (m && m.file.closed) {
      this.drop(m);
      return undefined;
    }
    return m;
  }

  private add(m: Mirror, key?: string): void {
    this.all.add(m);
    if (key) this.byKey.set(key, m);
  }

  private drop(m: Mirror): void {
    this.all.delete(m);
    if (m.source.kind !== 'buffer') {
      if (this.byKey.get(m.source.key) === m) this.byKey.delete(m.source.key);
      try {
        closeSync(m.source.realFd);
      } catch {
        /* already closed */
      }
    }
  }

  /** A simulated memfd of `size` bytes with `seals`; `bytes` written first when given. */
  private makeFile(name: string, size: number, seals: number, pos: number, bytes?: Uint8Array): MemfdFile {
    const f = memfdCreate(this.ctx(), name.replace(/\0/g, ''), MFD_ALLOW_SEALING);
    try {
      if (bytes && bytes.length) f.pwrite(bytes, 0);
      f.ftruncate(size);
      f.pos = pos;
      const s = seals === SEALS_UNKNOWN ? 0 : seals;
      if (s) f.addSeals(s);
    } catch (e) {
      f.close();
      throw e;
    }
    return f;
  }

  /** Forgets mirrors whose simulated file is gone (unpreserved and closed), closing the real fds. */
  sweep(): void {
    for (const m of [...this.all]) if (m.file.closed) this.drop(m);
  }

  /**
   * At kexec, before LUO's reboot path: every preserved mirror gets the real file's bytes (up to
   * the size taken at preserve) and position. Synchronous: nothing runs in between.
   */
  captureAll(): { files: number; bytes: number; posFromOthers: number; posLost: number; warnings: string[] } {
    return this.captureFiles(false);
  }

  /**
   * Ahead of a kexec's pre-copy: every preserved mirror gets the real file's bytes now, so the
   * pages the freeze finds unchanged are handed over ahead (positions and warnings wait for the freeze).
   */
  captureContents(): void {
    this.captureFiles(true);
  }

  private captureFiles(contentsOnly: boolean): { files: number; bytes: number; posFromOthers: number; posLost: number; warnings: string[] } {
    this.sweep();
    let files = 0;
    let bytes = 0;
    const warnings: string[] = [];
    const lost: Mirror[] = [];
    for (const m of this.all) {
      if (m.source.kind === 'buffer' || m.retrieved || !m.file.luoRefs) continue;
      files++;
      bytes += this.capture(m, warnings, contentsOnly);
      if (m.source.kind === 'proc' && !contentsOnly) {
        const src = m.source;
        const pos = (src.hiddenFd >= 0 ? procPos(src.pid, src.hiddenFd, src.key) : undefined) ?? procPos(src.pid, src.fd, src.key);
        if (pos !== undefined) m.pos = pos;
        else lost.push(m);
      }
    }
    if (contentsOnly) return { files, bytes, posFromOthers: 0, posLost: 0, warnings };
    const found = lost.length ? this.findElsewhere(lost) : 0;
    if (lost.length) {
      this.log('info', `luod: ${lost.length} preserved memfd(s) no longer open in their preserving process: position of ${found} read from another process holding the same fd; ${lost.length - found} keep the last known position`);
    }
    for (const m of this.all) if (m.source.kind !== 'buffer' && !m.retrieved && m.file.luoRefs) m.file.pos = m.pos;
    return { files, bytes, posFromOthers: found, posLost: lost.length - found, warnings };
  }

  /**
   * The position of memfds whose preserving process is gone or closed them: a process that still
   * holds the same memfd at the client's hidden-dup number (a forked holder inherits the hidden
   * dup, the same open file description, at the same number), else at the user's fd number. The
   * daemon's own pid is never looked at (its references sit at arbitrary numbers). Known client
   * pids first, then every /proc entry. Returns how many positions were found.
   */
  private findElsewhere(lost: readonly Mirror[]): number {
    type Proc = Extract<MirrorSource, { kind: 'proc' }>;
    const pending = new Set(lost);
    /** A match at the user's fd number of a mirror that has a hidden dup: used only if no hidden one turns up. */
    const fallback = new Map<Mirror, number>();
    const seen = new Set<number>([process.pid]);
    let found = 0;
    const visit = (pid: number): void => {
      if (seen.has(pid)) return;
      seen.add(pid);
      let names: Set<string>;
      try {
        names = new Set(readdirSync(`/proc/${pid}/fd`));
      } catch {
        return; // gone, a zombie, or not ours
      }
      for (const m of pending) {
        const src = m.source as Proc;
        if (src.hiddenFd >= 0 && names.has(String(src.hiddenFd))) {
          const pos = procPos(pid, src.hiddenFd, src.key);
          if (pos !== undefined) {
            m.pos = pos;
            pending.delete(m);
            fallback.delete(m);
            found++;
            continue;
          }
        }
        if (src.fd >= 0 && names.has(String(src.fd)) && !fallback.has(m)) {
          const pos = procPos(pid, src.fd, src.key);
          if (pos === undefined) continue;
          if (src.hiddenFd >= 0) {
            fallback.set(m, pos);
          } else {
            m.pos = pos;
            pending.delete(m);
            found++;
          }
        }
      }
    };
    for (const pid of this.knownPids()) {
      if (!pending.size) break;
      visit(pid);
    }
    if (pending.size) {
      let entries: string[] = [];
      try {
        entries = readdirSync('/proc');
      } catch {
        /* no /proc */
      }
      for (const e of entries) {
        if (!pending.size) break;
        if (/^\d+$/.test(e)) visit(Number(e));
      }
    }
    for (const [m, pos] of fallback) {
      if (!pending.has(m)) continue;
      m.pos = pos;
      found++;
    }
    return found;
  }

  private capture(m: Mirror, warnings: string[], quiet: boolean): number {
    const src = m.source;
    if (src.kind === 'buffer') return 0;
    const ino = m.file.inode;
    const size = ino.size;
    const chunk = new Uint8Array(Math.min(Math.max(size, PAGE_SIZE), 1 << 20));
    let done = 0;
    let short = false;
    while (done < size) {
      const want = Math.min(chunk.length, size - done);
      let got = 0;
      while (got < want) {
        const n = readSync(src.realFd, chunk, got, want - got, done + got);
        if (n === 0) break;
        got += n;
      }
      if (got < want) {
        chunk.fill(0, got, want);
        short = true;
      }
      for (let off = 0; off < want; off += PAGE_SIZE) {
        const page = chunk.subarray(off, Math.min(want, off + PAGE_SIZE));
        // a page the twin holds already is not written: it stays unchanged for a pre-copy
        if (ino.holds(done + off, page)) continue;
        ino.writeChunk(done + off, page);
      }
      done += want;
    }
    const real = fstatSync(src.realFd).size;
    const what = src.kind === 'proc' ? `memfd of pid ${src.pid} fd ${src.fd}` : src.path;
    if ((short || real !== size) && !quiet) {
      const w = `${what} is ${real} bytes at kexec, ${size} at preserve (PRESERVE_FD froze its size); handing over ${size}`;
      warnings.push(w);
      this.log('warn', `luod: ${w}`);
    }
    return size;
  }

  /** Closes every real fd (the daemon is exiting). */
  closeAll(): void {
    for (const m of [...this.all]) this.drop(m);
  }
}
