/**
 * LUO sessions (kernel/liveupdate/luo_session.c, luo-v5): named containers of preserved files.
 * Outgoing sessions are created here and serialized at reboot into a chain of session blocks;
 * incoming ones are deserialized on first use and retrieved by name. The two name spaces are
 * separate. Unlike the real 7.3.4 kernel, a failed create never leaves an empty block behind.
 */
import { LuoError } from '../errno.ts';
import { LIVEUPDATE_SESSION_NAME_LENGTH } from '../abi/uapi.ts';
import { LuoSessionSer } from '../abi/luo.ts';
import { stringBytes } from '../bytes/cursor.ts';
import { BlockSet } from './blocks.ts';
import type { KernelFile } from './file-handler.ts';
import { type FileContext, FileSet } from './file.ts';

export type SessionDirection = 'outgoing' | 'incoming';

export class LuoSession {
  readonly fileSet: FileSet;
  /** Set on incoming sessions once RETRIEVE_SESSION handed out an fd for them. */
  retrieved = false;
  /** The session fd was closed (outgoing: removed; incoming: finished and removed). */
  released = false;

  constructor(readonly name: string, readonly direction: SessionDirection, ctx: FileContext) {
    this.fileSet = new FileSet(ctx);
  }

  /** The anon-inode file name the kernel gives the session fd. */
  get fileName(): string {
    return `[luo_session] ${this.name}`.slice(0, 127);
  }
}

/**
 * strncmp over 64 bytes of the C strings: two names are the same session name exactly when their
 * keys are equal. The kernel scans its list linearly; luo indexes each list by this key instead.
 */
const nameKey = (name: string): string => name.slice(0, LIVEUPDATE_SESSION_NAME_LENGTH);

/**
 * Removes `s` from `list` keeping the order. Sessions are mostly closed in the order they were
 * made (or retrieved), so the search starts at the front; V8 trims the front of a large array in
 * O(1) for shift().
 */
function removeFrom(list: LuoSession[], s: LuoSession): void {
  if (list[0] === s) {
    list.shift();
    return;
  }
  const i = list.indexOf(s);
  if (i >= 0) list.splice(i, 1);
}

export class SessionManager {
  readonly outgoing: LuoSession[] = [];
  readonly incoming: LuoSession[] = [];
  /** The same sessions by nameKey (the first of each name: create and deserialize refuse duplicates). */
  private readonly outByName = new Map<string, LuoSession>();
  private readonly inByName = new Map<string, LuoSession>();
  private readonly outBlocks: BlockSet;
  private readonly inBlocks: BlockSet;
  private inActive = false;
  private deserialized: { error: LuoError | undefined } | undefined;
  /** Set once serialization succeeded at reboot: the state is frozen for good. */
  frozen = false;

  constructor(private readonly ctx: FileContext) {
    this.outBlocks = new BlockSet(ctx.kho, ctx.mem, LuoSessionSer.size);
    this.inBlocks = new BlockSet(ctx.kho, ctx.mem, LuoSessionSer.size);
  }

  private assertMutable(): void {
    if (this.frozen) throw new LuoError('EBUSY', 'sessions are frozen: a live update is in progress');
  }

  /** luo_session_create: EINVAL for a bad name, EEXIST for an outgoing duplicate, ENOMEM/ENOSPC for blocks. */
  create(name: string): LuoSession {
    this.assertMutable();
    const bytes = stringBytes(name);
    const nul = bytes.indexOf(0);
    const len = Math.min(nul >= 0 ? nul : bytes.length, LIVEUPDATE_SESSION_NAME_LENGTH);
    if (len === 0 || len > LIVEUPDATE_SESSION_NAME_LENGTH - 1) {
      throw new LuoError('EINVAL', `session name must be 1..${LIVEUPDATE_SESSION_NAME_LENGTH - 1} bytes (got ${len === LIVEUPDATE_SESSION_NAME_LENGTH ? '64 without a terminator' : len})`);
    }
    // The kernel grows the session blocks before looking for a duplicate (so ENOSPC/ENOMEM win
    // over EEXIST); it then forgets to shrink them back. We shrink.
    this.outBlocks.grow(this.outgoing.length + 1);
    const key = nameKey(name);
    if (this.outByName.has(key)) {
      this.outBlocks.shrink(this.outgoing.length);
      throw new LuoError('EEXIST', `an outgoing session named "${name}" already exists`);
    }
    const s = new LuoSession(name, 'outgoing', this.ctx);
    this.outgoing.push(s);
    this.outByName.set(key, s);
    return s;
  }

  /** luo_session_retrieve: ENOENT if unknown, EINVAL if already retrieved. */
  retrieve(name: string): LuoSession {
    this.assertMutable();
    const s = this.inByName.get(nameKey(name));
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
      removeFrom(this.incoming, s);
      this.inByName.delete(nameKey(s.name));
    } else {
      s.fileSet.unpreserveAll();
      removeFrom(this.outgoing, s);
      this.outByName.delete(nameKey(s.name));
      this.outBlocks.shrink(this.outgoing.length);
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
        const ser = LuoSessionSer.decode(slot.page, slot.offset);
        const key = nameKey(ser.name);
        if (this.inByName.has(key)) throw new LuoError('EEXIST', `duplicate incoming session "${ser.name}"`);
        const s = new LuoSession(ser.name, 'incoming', this.ctx);
        this.incoming.push(s);
        this.inByName.set(key, s);
        s.fileSet.deserialize(ser.files, ser.count, `session "${ser.name}"`);
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
      for (const s of this.outgoing) {
        const slot = it.reserveEntry();
        if (!slot) throw new LuoError('ENOSPC', 'session blocks are full (they are grown ahead of need: a bug)');
        let fs;
        try {
          fs = s.fileSet.freeze();
        } catch (e) {
          it.prev();
          throw e;
        }
        LuoSessionSer.encode({ name: s.name, files: fs.files, count: fs.count }, slot.page, slot.offset);
        done.push({ s, slot });
      }
    } catch (e) {
      for (const d of done.reverse()) {
        d.s.fileSet.unfreeze();
        d.slot.page.fill(0, d.slot.offset, d.slot.offset + LuoSessionSer.size);
      }
      throw e;
    }
    this.frozen = true;
    return this.outgoing.length > 0 ? this.outBlocks.headPa : 0n;
  }

  /** Session blocks of the outgoing chain (pages), for inspection. */
  get outgoingBlocks(): number {
    return this.outBlocks.nblocks;
  }
}
