/**
 * Preserved files of one session (kernel/liveupdate/luo_file.c, luo-v5: files in linked blocks).
 * Outgoing: preserve with the kernel's ordered checks, unpreserve on close, freeze at reboot with
 * unfreeze rollback. Incoming: deserialize from the block chain, retrieve by token (shared open
 * file, sticky errors), finish in reverse order after every can_finish agreed.
 */
import { LuoError } from '../errno.ts';
import { LuoFileSer, LuoSessionSer } from '../abi/luo.ts';
import type { KhoMemory } from '../kho/memory.ts';
import { type BlockKho, BlockSet } from './blocks.ts';
import { EntryArray } from './entry-array.ts';
import type { EntryLayout } from './layout.ts';
import type { EntryStore } from './entry-store.ts';
import { decodeFileEntry, encodeFileEntry } from './entry-codec.ts';
import type { FileHandler, FileOpArgs, KernelFile } from './file-handler.ts';

/** File-lifecycle-bound hooks (luo_flb.c); no-ops until FLBs are registered. */
export interface FlbHooks {
  filePreserve(h: FileHandler): void;
  fileUnpreserve(h: FileHandler): void;
  fileFinish(h: FileHandler): void;
}

/** What every file set of one kernel shares: handlers, the preserved-file registry, KHO. */
export interface FileContext {
  readonly kho: BlockKho;
  readonly mem: KhoMemory;
  readonly ramPages: number;
  readonly handlers: () => readonly FileHandler[];
  /** luo_preserved_files: id -> file, across every session. */
  readonly preservedIds: Map<unknown, KernelFile>;
  readonly flb: FlbHooks;
  readonly log: (msg: string) => void;
  /** How the release keeps its entries: linked blocks or fixed arrays (layout.ts). */
  readonly layout: EntryLayout;
}

/** A store for the entries of sessions or of one session's files, in the release's layout. */
export function newStore(ctx: FileContext, kind: 'sessions' | 'files'): EntryStore {
  const l = ctx.layout[kind];
  if (l.kind === 'array') return new EntryArray(ctx.kho, ctx.mem, l.shape);
  return new BlockSet(ctx.kho, ctx.mem, kind === 'sessions' ? LuoSessionSer.size : LuoFileSer.size, l.pages);
}

/** One preserved file (struct luo_file). */
export interface LuoFile {
  readonly handler: FileHandler;
  readonly token: bigint;
  file: KernelFile | undefined;
  serializedData: bigint;
  privateData: unknown;
  /** 0 never tried, 1 retrieved, negative errno after a failed retrieve (sticky). */
  retrieveStatus: number;
  retrieveError?: LuoError;
}

const idOf = (h: FileHandler, f: KernelFile): unknown => (h.ops.getId ? h.ops.getId(f) : f);

function args(lf: LuoFile): FileOpArgs {
  return { handler: lf.handler, retrieveStatus: lf.retrieveStatus, file: lf.file, serializedData: lf.serializedData, privateData: lf.privateData };
}

export class FileSet {
  readonly files: LuoFile[] = [];
  /**
   * The first file of each token in `files` (the kernel scans the list; preserve refuses a token
   * in use, and an incoming chain with a repeated token is looked up at its first entry). Kept in
   * step with `files`, which only grows at the end and shrinks from the end. Made on first use:
   * most sets are small or empty.
   */
  private byToken: Map<bigint, LuoFile> | undefined;
  private store: EntryStore | undefined;

  constructor(private readonly ctx: FileContext) {}

  /** Where this set's entries go: made on first use (most incoming sessions have no files). */
  get blocks(): EntryStore {
    return (this.store ??= newStore(this.ctx, 'files'));
  }

  get count(): number {
    return this.files.length;
  }

  /**
   * luo_preserve_file. Order of checks (newest mainline): token in use (EEXIST); room in the
   * file blocks (ENOMEM/ENOSPC); a valid file (EBADF); a handler that accepts it (ENOENT); the same
   * file preserved anywhere (EBUSY); FLB preserve; the handler's preserve. Every failure leaves
   * the set exactly as it was.
   */
  preserve(token: bigint, file: KernelFile | undefined): void {
    if (this.byToken?.has(token)) throw new LuoError('EEXIST', `token 0x${token.toString(16)} is already used in this session`);
    if (this.blocks instanceof EntryArray) {
      // luo_preserve_file of the FDT era: a full array (ENOSPC), then the fd (EBADF), then the array's memory
      this.blocks.checkRoom(this.files.length + 1);
      if (!file) throw new LuoError('EBADF', 'not an open file descriptor');
    }
    this.blocks.grow(this.files.length + 1);
    let stage = 0;
    let handler: FileHandler | undefined;
    let id: unknown;
    try {
      if (!file) throw new LuoError('EBADF', 'not an open file descriptor');
      handler = this.ctx.handlers().find((h) => h.ops.canPreserve(h, file));
      if (!handler) throw new LuoError('ENOENT', `no file handler can preserve a ${file.kind} file`);
      id = idOf(handler, file);
      if (this.ctx.preservedIds.has(id)) throw new LuoError('EBUSY', 'this file is already preserved');
      this.ctx.preservedIds.set(id, file);
      stage = 1;
      this.ctx.flb.filePreserve(handler);
      stage = 2;
      const a: FileOpArgs = { handler, retrieveStatus: 0, file, serializedData: 0n, privateData: undefined };
      handler.ops.preserve(a);
      file.luoRefs = (file.luoRefs ?? 0) + 1;
      this.push({ handler, token, file, serializedData: a.serializedData, privateData: a.privateData, retrieveStatus: 0 });
    } catch (e) {
      if (stage >= 2) this.ctx.flb.fileUnpreserve(handler!);
      if (stage >= 1) this.ctx.preservedIds.delete(id);
      this.blocks.shrink(this.files.length);
      throw e;
    }
  }

  private push(lf: LuoFile): void {
    this.files.push(lf);
    const m = (this.byToken ??= new Map());
    if (!m.has(lf.token)) m.set(lf.token, lf);
  }

  private pop(): LuoFile {
    const lf = this.files.pop()!;
    if (this.byToken!.get(lf.token) === lf) this.byToken!.delete(lf.token);
    return lf;
  }

  /** luo_file_unpreserve_files: every file in reverse order, then the blocks. */
  unpreserveAll(): void {
    while (this.files.length) {
      const lf = this.pop();
      lf.handler.ops.unpreserve(args(lf));
      this.ctx.flb.fileUnpreserve(lf.handler);
      if (lf.file) {
        this.ctx.preservedIds.delete(idOf(lf.handler, lf.file));
        lf.file.luoRefs = Math.max(0, (lf.file.luoRefs ?? 1) - 1);
      }
      this.blocks.shrink(this.files.length);
    }
    this.blocks.shrink(0);
  }

  /**
   * luo_file_freeze: in preservation order, optional freeze() then the {compatible, data, token}
   * entry. On a failure the files frozen so far are unfrozen in the same order, the entries are
   * cleared and the error is returned. Returns the file_set_ser fields.
   */
  freeze(): { files: bigint; count: bigint } {
    if (this.files.length === 0) return { files: 0n, count: 0n };
    const it = this.blocks.iterator();
    for (let i = 0; i < this.files.length; i++) {
      const lf = this.files[i]!;
      try {
        if (lf.handler.ops.freeze) {
          const a = args(lf);
          lf.handler.ops.freeze(a);
          lf.serializedData = a.serializedData;
        }
        const slot = it.reserveEntry();
        if (!slot) throw new LuoError('ENOSPC', 'file blocks are full (they are grown ahead of need: a bug)');
        encodeFileEntry(slot.page, slot.offset, lf.handler.compatible, lf.serializedData, lf.token);
      } catch (e) {
        this.ctx.log(`Freeze failed for token[0x${lf.token.toString(16)}] handler[${lf.handler.compatible}] err[${e instanceof LuoError ? e.errno : String(e)}]`);
        this.unfreezeUpTo(i);
        throw e;
      }
    }
    this.blocks.sync(this.files.length);
    return { files: this.blocks.headPa, count: BigInt(this.files.length) };
  }

  private unfreezeUpTo(n: number): void {
    for (let i = 0; i < n; i++) {
      const lf = this.files[i]!;
      lf.handler.ops.unfreeze?.(args(lf));
    }
    this.blocks.clear();
  }

  /** luo_file_unfreeze: roll back a whole frozen set (a later session failed to freeze). */
  unfreeze(): void {
    if (this.files.length) this.unfreezeUpTo(this.files.length);
  }

  /**
   * luo_file_deserialize from {files, count}: the chain is checked, every entry's handler must
   * be registered (ENOENT) and the entries must add up to `count` (EINVAL). The array releases
   * read `count` entries of the array; luo-v1 stopped at the first without a handler, keeping the
   * ones before (its caller ignored the error: the session is restored without the rest).
   */
  deserialize(filesPa: bigint, count: bigint, where: string): void {
    if (this.blocks instanceof EntryArray) return this.deserializeArray(filesPa, count, where);
    if (filesPa === 0n) {
      if (count !== 0n) throw new LuoError('EINVAL', `${where}: no file blocks but a count of ${count}`);
      return;
    }
    this.blocks.restore(filesPa, this.ctx.ramPages, `${where} file blocks`);
    const it = this.blocks.iterator();
    let n = 0n;
    for (let slot = it.readEntry(); slot; slot = it.readEntry()) {
      n++;
      if (n > count) break;
      const ser = decodeFileEntry(slot.page, slot.offset);
      const handler = this.ctx.handlers().find((h) => h.compatible === ser.compatible);
      if (!handler) throw new LuoError('ENOENT', `${where}: no registered handler for compatible '${ser.compatible}'`);
      this.push({ handler, token: ser.token, file: undefined, serializedData: ser.data, privateData: undefined, retrieveStatus: 0 });
    }
    if (n !== count) throw new LuoError('EINVAL', `${where}: file blocks hold ${n > count ? 'more than' : n} entries, the session says ${count}`);
  }

  private deserializeArray(filesPa: bigint, count: bigint, where: string): void {
    if (filesPa === 0n) return;
    this.blocks.restore(filesPa, this.ctx.ramPages, `${where} file array`, count);
    const it = this.blocks.iterator();
    for (let slot = it.readEntry(); slot; slot = it.readEntry()) {
      const ser = decodeFileEntry(slot.page, slot.offset);
      const handler = this.ctx.handlers().find((h) => h.compatible === ser.compatible);
      if (!handler) {
        if (!this.ctx.layout.dropUnclaimedFiles) throw new LuoError('ENOENT', `${where}: no registered handler for compatible '${ser.compatible}'`);
        this.ctx.log(`${where}: No registered handler for compatible '${ser.compatible}'`);
        return;
      }
      this.push({ handler, token: ser.token, file: undefined, serializedData: ser.data, privateData: undefined, retrieveStatus: 0 });
    }
  }

  /** luo_retrieve_file: ENOENT for an unknown token; a failed retrieve stays failed. */
  retrieve(token: bigint): KernelFile {
    const lf = this.byToken?.get(token);
    if (!lf) throw new LuoError('ENOENT', `no file with token 0x${token.toString(16)} in this session`);
    if (lf.retrieveStatus < 0) throw lf.retrieveError ?? new LuoError('EIO', 'retrieve failed earlier');
    if (lf.retrieveStatus > 0) return lf.file!;
    const a = args(lf);
    try {
      lf.handler.ops.retrieve(a);
      if (!a.file) throw new LuoError('EINVAL', `handler ${lf.handler.compatible} returned no file`);
    } catch (e) {
      const err = e instanceof LuoError ? e : new LuoError('EIO', String(e));
      lf.retrieveStatus = -err.code;
      lf.retrieveError = err;
      throw err;
    }
    lf.file = a.file;
    lf.file.luoRefs = (lf.file.luoRefs ?? 0) + 1;
    this.ctx.preservedIds.set(idOf(lf.handler, lf.file), lf.file);
    lf.retrieveStatus = 1;
    return lf.file;
  }

  /** luo_file_finish: EBUSY (nothing changes) unless every can_finish agrees; then reverse order. */
  finish(): void {
    if (this.files.length === 0) {
      this.store?.destroy();
      return;
    }
    for (const lf of this.files) {
      if (lf.handler.ops.canFinish && !lf.handler.ops.canFinish(args(lf))) {
        throw new LuoError('EBUSY', `file token 0x${lf.token.toString(16)} (${lf.handler.compatible}) cannot finish yet`);
      }
    }
    while (this.files.length) {
      const lf = this.pop();
      lf.handler.ops.finish(args(lf));
      this.ctx.flb.fileFinish(lf.handler);
      if (lf.file) {
        this.ctx.preservedIds.delete(idOf(lf.handler, lf.file));
        lf.file.luoRefs = Math.max(0, (lf.file.luoRefs ?? 1) - 1);
      }
    }
    this.blocks.destroy();
  }
}
