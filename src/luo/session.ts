/**
 * LUO sessions (kernel/liveupdate/luo_session.c, luo-v5): named containers of preserved files.
 * Outgoing sessions are created here and serialized at reboot into a chain of session blocks;
 * incoming ones are deserialized on first use and retrieved by name. The two name spaces are
 * separate. Unlike the real 7.3.4 kernel, a failed create never leaves an empty block behind.
 */
import { LuoError } from '../errno.ts';
import { LIVEUPDATE_SESSION_NAME_LENGTH } from '../abi/uapi.ts';
import { LuoSessionSer } from '../abi/luo.ts';
import { latin1String, stringBytes } from '../bytes/cursor.ts';
import { EntryArray } from './entry-array.ts';
import type { EntryStore } from './entry-store.ts';
import { decodeSessionEntry, encodeSessionEntry, sessionEntryHasNoFiles, sessionEntryName } from './entry-codec.ts';
import type { KernelFile } from './file-handler.ts';
import { type FileContext, FileSet, newStore } from './file.ts';

export type SessionDirection = 'outgoing' | 'incoming';

export class LuoSession {
  private files: FileSet | undefined;
  /** Set on incoming sessions once RETRIEVE_SESSION handed out an fd for them. */
  retrieved = false;
  /** The session fd was closed (outgoing: removed; incoming: finished and removed). */
  released = false;

  constructor(readonly name: string, readonly direction: SessionDirection, private readonly ctx: FileContext) {}

  /** The session's files (made on first use: most restored sessions of a large hand-over have none). */
  get fileSet(): FileSet {
    return (this.files ??= new FileSet(this.ctx));
  }

  /** The anon-inode file name the kernel gives the session fd. */
  get fileName(): string {
    return `[luo_session] ${this.name}`.slice(0, 127);
  }
}

/**
 * strncmp over 64 bytes of the C strings: two names are the same session name exactly when their
 * keys are equal. The kernel scans its lists linearly; luo keys each list by this instead.
 */
const nameKey = (name: string): string => name.slice(0, LIVEUPDATE_SESSION_NAME_LENGTH);

/**
 * Sessions in the order they were added, keyed by nameKey (create and deserialize refuse
 * duplicates, so a key names one session): O(1) add, lookup and removal at any position, and an
 * array view rebuilt only when read after a removal.
 */
class SessionList {
  private readonly byName = new Map<string, LuoSession>();
  private view: LuoSession[] | undefined = [];

  get size(): number {
    return this.byName.size;
  }
  get(name: string): LuoSession | undefined {
    return this.byName.get(nameKey(name));
  }
  add(s: LuoSession): void {
    this.byName.set(nameKey(s.name), s);
    this.view?.push(s);
  }
  remove(s: LuoSession): void {
    const key = nameKey(s.name);
    if (this.byName.get(key) !== s) return;
    this.byName.delete(key);
    this.view = undefined;
  }
  values(): IterableIterator<LuoSession> {
    return this.byName.values();
  }
  array(): LuoSession[] {
    return (this.view ??= [...this.byName.values()]);
  }
}

export class SessionManager {
  private readonly out = new SessionList();
  private readonly inc = new SessionList();
  private readonly outBlocks: EntryStore;
  private readonly inBlocks: EntryStore;
  private inActive = false;
  private deserialized: { error: LuoError | undefined } | undefined;
  /** Set once serialization succeeded at reboot: the state is frozen for good. */
  frozen = false;

  constructor(private readonly ctx: FileContext) {
    this.outBlocks = newStore(ctx, 'sessions');
    this.inBlocks = newStore(ctx, 'sessions');
  }

  /** Outgoing sessions in creation order (read-only: they change through create and release). */
  get outgoing(): LuoSession[] {
    return this.out.array();
  }

  /** Incoming sessions in chain order until each is released (read-only, like `outgoing`). */
  get incoming(): LuoSession[] {
    return this.inc.array();
  }

  private assertMutable(): void {
    if (this.frozen) throw new LuoError('EBUSY', 'sessions are frozen: a live update is in progress');
  }

  /**
   * luo_session_create: EINVAL for a bad name, EEXIST for an outgoing duplicate, ENOMEM/ENOSPC for
   * blocks. The first uAPI (6.19 to luo-v2) did not check names: strscpy kept 63 bytes of a longer
   * one, and an empty name made a session named "".
   */
  create(name: string, validateName = true): LuoSession {
    this.assertMutable();
    const bytes = stringBytes(name);
    const nul = bytes.indexOf(0);
    const len = Math.min(nul >= 0 ? nul : bytes.length, LIVEUPDATE_SESSION_NAME_LENGTH);
    if (!validateName) {
      const keep = Math.min(len, LIVEUPDATE_SESSION_NAME_LENGTH - 1);
      if (keep !== bytes.length) name = latin1String(bytes.subarray(0, keep));
    } else if (len === 0 || len > LIVEUPDATE_SESSION_NAME_LENGTH - 1) {
      throw new LuoError('EINVAL', `session name must be 1..${LIVEUPDATE_SESSION_NAME_LENGTH - 1} bytes (got ${len === LIVEUPDATE_SESSION_NAME_LENGTH ? '64 without a terminator' : len})`);
    }
    // The kernel grows the session blocks before looking for a duplicate (so ENOSPC/ENOMEM win
    // over EEXIST); it then forgets to shrink them back. We shrink.
    this.outBlocks.grow(this.out.size + 1);
    if (this.out.get(name)) {
      this.outBlocks.shrink(this.out.size);
      throw new LuoError('EEXIST', `an outgoing session named "${name}" already exists`);
    }
    const s = new LuoSession(name, 'outgoing', this.ctx);
    this.out.add(s);
    return s;
  }

  /** luo_session_retrieve: ENOENT if unknown, EINVAL if already retrieved. */
  retrieve(name: string): LuoSession {
    this.assertMutable();
    const s = this.inc.get(name);
    if (!s) throw new LuoError('ENOENT', `no incoming session named "${name}"`);
    if (s.retrieved) throw new LuoError('EINVAL', `session "${name}" was already retrieved`);
    s.retrieved = true;
    return s;
  }

  /**
   * Closing a session fd (luo_session_release). Outgoing: unpreserve every file (reverse order)
   * and remove the session. Incoming (retrieved): an implicit FINISH; if that fails (EBUSY) the
   * error is returned and the session stays, unreachable, until the next live update.
   */
  release(s: LuoSession): void {
    this.assertMutable();
    if (s.released) return;
    if (s.retrieved) {
      s.fileSet.finish();
      this.inc.remove(s);
    } else {
      s.fileSet.unpreserveAll();
      this.out.remove(s);
      this.outBlocks.shrink(this.out.size);
    }
    s.released = true;
  }

  preserveFile(s: LuoSession, token: bigint, file: KernelFile | undefined): void {
    this.assertMutable();
    if (s.retrieved || s.direction !== 'outgoing') throw new LuoError('EINVAL', 'PRESERVE_FD is only allowed on outgoing sessions');
    s.fileSet.preserve(token, file);
  }

  retrieveFile(s: LuoSession, token: bigint): KernelFile {
    this.assertMutable();
    if (!s.retrieved) throw new LuoError('EINVAL', 'RETRIEVE_FD is only allowed on incoming sessions');
    return s.fileSet.retrieve(token);
  }

  finish(s: LuoSession): void {
    this.assertMutable();
    if (!s.retrieved) throw new LuoError('EINVAL', 'FINISH is only allowed on incoming sessions');
    s.fileSet.finish();
  }

  /** Early boot: restore the incoming session chain (errors are fatal to LUO). */
  setupIncoming(sessionsPa: bigint): void {
    if (sessionsPa === 0n) return;
    this.inBlocks.restore(sessionsPa, this.ctx.ramPages, 'session blocks');
    this.inActive = true;
  }

  /**
   * luo_session_deserialize, run on the first open of /dev/liveupdate: builds the incoming
   * sessions. The result is cached: a failure is returned again on every later call, and the
   * sessions restored before it are deliberately leaked.
   */
  deserialize(): void {
    if (this.deserialized) {
      if (this.deserialized.error) throw this.deserialized.error;
      return;
    }
    this.deserialized = { error: undefined };
    if (!this.inActive) return;
    try {
      const it = this.inBlocks.iterator();
      for (let slot = it.readEntry(); slot; slot = it.readEntry()) {
        const { page, offset } = slot;
        if (offset + LuoSessionSer.size > page.length) throw new LuoError('EINVAL', 'session entry crosses its block');
        const name = sessionEntryName(page, offset);
        if (this.inc.get(name)) throw new LuoError('EEXIST', `duplicate incoming session "${name}"`);
        const s = new LuoSession(name, 'incoming', this.ctx);
        this.inc.add(s);
        // An empty file set ({0, 0}) has nothing to restore: nothing to decode, no error label.
        if (!sessionEntryHasNoFiles(page, offset)) {
          const ser = decodeSessionEntry(page, offset);
          s.fileSet.deserialize(ser.files, ser.count, `session "${name}"`);
        }
      }
      this.inBlocks.destroy();
    } catch (e) {
      this.inBlocks.destroy();
      const err = e instanceof LuoError ? e : new LuoError('EIO', String(e));
      this.deserialized.error = err;
      this.ctx.log(`failed to deserialize incoming sessions: ${err.message}`);
      throw err;
    }
  }

  /** The previous kernel handed sessions over and they wait for the first open to be restored. */
  get incomingPending(): boolean {
    return this.inActive && !this.deserialized;
  }

  get deserializeError(): LuoError | undefined {
    return this.deserialized?.error;
  }

  /**
   * luo_session_serialize at reboot: sessions in creation order, each freezing its files into its
   * own blocks; the name and {files, count} go into the session slot. On failure everything is
   * unfrozen in reverse order, slots are zeroed, and the error is returned. Returns sessions_pa.
   */
  serialize(): bigint {
    this.assertMutable();
    const it = this.outBlocks.iterator();
    const done: Array<{ s: LuoSession; slot: { page: Uint8Array; offset: number } }> = [];
    try {
      for (const s of this.out.values()) {
        const slot = it.reserveEntry();
        if (!slot) throw new LuoError('ENOSPC', 'session blocks are full (they are grown ahead of need: a bug)');
        let fs;
        try {
          fs = s.fileSet.freeze();
        } catch (e) {
          it.prev();
          throw e;
        }
        encodeSessionEntry(slot.page, slot.offset, s.name, fs.files, fs.count);
        done.push({ s, slot });
      }
    } catch (e) {
      for (const d of done.reverse()) {
        d.s.fileSet.unfreeze();
        d.slot.page.fill(0, d.slot.offset, d.slot.offset + LuoSessionSer.size);
      }
      throw e;
    }
    this.outBlocks.sync(this.out.size);
    this.frozen = true;
    return this.out.size > 0 ? this.outBlocks.headPa : 0n;
  }

  /**
   * luo_session_setup_outgoing (FDT era): the session array is allocated at boot and its address
   * published in the LUO FDT. Returns it.
   */
  allocateOutgoingArray(): bigint {
    if (!(this.outBlocks instanceof EntryArray)) throw new LuoError('EINVAL', 'sessions are kept in blocks, not an array');
    this.outBlocks.allocate();
    return this.outBlocks.headPa;
  }

  /** Session blocks of the outgoing chain (pages), for inspection. */
  get outgoingBlocks(): number {
    return this.outBlocks.nblocks;
  }
}
