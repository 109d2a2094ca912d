/**
 * Generated uAPI programs: a list of stages (a kexec between two stages), each a list of operations
 * on fd slots, with a text form that luo's C interpreter (native/conformance/lu_script.c) and the
 * in-process one (run-model.ts) both read. Generation is deterministic from a seed, and no choice
 * depends on a result, so every runner executes the same plan whatever it answers.
 *
 * The generator stays inside what luo promises to run identically through the LD_PRELOAD shim
 * (native/preload/README.md lists the gaps): no I/O on device or session fds, no growth of a
 * sealable memfd once it was offered to PRESERVE_FD (its GROW|SHRINK seals outlive the session),
 * no fd limits.
 */

/** One operation: a name and integer arguments (see lu_script.c for each one's meaning). */
export interface Op {
  readonly name: OpName;
  readonly args: readonly bigint[];
}

export type OpName =
  | 'open' | 'create' | 'rsession' | 'memfd' | 'preserve' | 'rfd' | 'finish' | 'getname' | 'close' | 'dup'
  | 'pwrite' | 'write' | 'ftruncate' | 'fallocate' | 'seal' | 'getseals' | 'fstat' | 'lseek' | 'read' | 'ioctl'
  | 'other' | 'bulk_create' | 'bulk_rsession' | 'bulk_preserve' | 'bulk_rfd';

/** Arity of each operation, as lu_script.c checks it. */
export const ARITY: Readonly<Record<OpName, number>> = {
  open: 1, create: 4, rsession: 4, memfd: 2, preserve: 4, rfd: 3, finish: 2, getname: 2, close: 1, dup: 2,
  pwrite: 4, write: 3, ftruncate: 2, fallocate: 4, seal: 2, getseals: 1, fstat: 1, lseek: 3, read: 3, ioctl: 3,
  other: 2, bulk_create: 3, bulk_rsession: 3, bulk_preserve: 3, bulk_rfd: 3,
};

export const SLOTS = 12;
/** Session names by id (lu_script.c name_bytes): 0..5 "s<id>", 6 empty, 7 63 x 'a', 8 64 x 'b' unterminated. */
export const NAME_IDS = 9;
/** Tokens by id (lu_script.c token_of). */
export const TOKENS: readonly bigint[] = [0n, 1n, 2n, 3n, 0x1an, 0xffff_ffff_ffff_ffffn];
/** Struct size variants (lu_script.c size_of): exact, one short, zero tail, nonzero tail, just the size word. */
export const SIZE_VARIANTS = 5;

/** The bytes of session name `id` in a 64-byte field. */
export function nameBytes(id: number): Uint8Array {
  const b = new Uint8Array(64);
  if (id === 7) b.fill(0x61, 0, 63);
  else if (id === 8) b.fill(0x62);
  else if (id !== 6) b.set(new TextEncoder().encode(`s${id}`));
  return b;
}

export const tokenOf = (id: number): bigint => TOKENS[id] ?? 7n;

/** The u32 size word for variant `v` of a `ksize`-byte struct; variant 3 also puts a nonzero byte in the tail. */
export function sizeOf(v: number, ksize: number, buf: Uint8Array): number {
  switch (v) {
    case 1:
      return ksize - 1;
    case 2:
      return ksize + 8;
    case 3:
      buf[ksize + 3] = 1;
      return ksize + 8;
    case 4:
      return 4;
    default:
      return ksize;
  }
}

export interface Program {
  readonly seed: number;
  readonly stages: readonly (readonly Op[])[];
}

/** The text form of one stage (one operation per line). */
export function stageText(ops: readonly Op[]): string {
  return ops.map((o) => `${o.name} ${o.args.join(' ')}\n`).join('');
}

/** Parses a stage's text form; throws on an unknown operation or a wrong arity. */
export function parseStage(text: string): Op[] {
  const out: Op[] = [];
  for (const [i, raw] of text.split('\n').entries()) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const [name, ...rest] = line.split(/\s+/);
    if (!(name! in ARITY)) throw new Error(`line ${i + 1}: unknown operation ${name}`);
    const n = name as OpName;
    if (rest.length !== ARITY[n]) throw new Error(`line ${i + 1}: ${n} takes ${ARITY[n]} arguments, not ${rest.length}`);
    out.push({ name: n, args: rest.map((a) => BigInt(a)) });
  }
  return out;
}

// ---------------------------------------------------------------- generation

/** A small seeded PRNG (xorshift32 over a mixed seed): the same seed gives the same program everywhere. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    let x = (seed ^ 0x9e3779b9) >>> 0;
    x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
    x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
    this.s = (x ^ (x >>> 16)) >>> 0 || 1;
  }
  next(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return this.next() % n;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

/** What a slot holds as far as the generator knows; 'unknown' is an fd-making op it guessed would fail. */
type Kind = 'empty' | 'unknown' | 'dev' | 'session' | 'incoming' | 'memfd';

/** What the generator knows of an open memfd (shared by the slots that dup'ed it). */
interface FileTag {
  readonly sealable: boolean;
  /** Offered to PRESERVE_FD while sealable: never written, grown or shrunk again (shim gap 2). */
  noResize: boolean;
}

/** An outgoing session the generator expects to exist (its name is taken while a slot holds it). */
interface SessionTag {
  readonly name: number;
}

interface Slot {
  kind: Kind;
  file?: FileTag;
  session?: SessionTag;
}

/** memfd_create flags the generator uses: none, MFD_ALLOW_SEALING, MFD_NOEXEC_SEAL, MFD_EXEC|MFD_ALLOW_SEALING. */
const MEMFD_FLAGS = [0, 2, 8, 0x12];
/** Generic and foreign ioctl commands tried on any slot. */
const IOCTL_CMDS = [0x5460 /* FIOQSIZE */, 2 /* FIGETBSZ */, 0x541b /* FIONREAD */, 0x5452 /* FIOASYNC */, 0x5451 /* FIOCLEX */, 0xba07, 0xba44, 0xc048ba00, 0x1234];
const SEALS = [0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x6, 0x4000];

export interface GenerateOptions {
  /** Operations per stage (default 300). */
  readonly opsPerStage?: number;
  /** Stages (default 2: one kexec between them). */
  readonly stages?: number;
}

/** A random program for `seed`. */
export function generate(seed: number, opts: GenerateOptions = {}): Program {
  const rng = new Rng(seed);
  const perStage = opts.opsPerStage ?? 300;
  const stages: Op[][] = [];
  const used: Used = { names: [], tokens: [], bulkBases: [], bulkTokens: [] };
  for (let s = 0; s < (opts.stages ?? 2); s++) stages.push(generateStage(rng, perStage, s > 0, used));
  return { seed, stages };
}

/** Session names and tokens the stages before used: later stages ask for them more often. */
interface Used {
  readonly names: number[];
  readonly tokens: number[];
  /** Name bases of bulk_create and token bases of bulk_preserve. */
  readonly bulkBases: number[];
  readonly bulkTokens: number[];
}

const BULK_TOKEN_BASES = [0x100, 0x1000, 0x10000];

function generateStage(rng: Rng, count: number, afterKexec: boolean, used: Used): Op[] {
  const slots: Slot[] = Array.from({ length: SLOTS }, () => ({ kind: 'empty' }));
  const ops: Op[] = [];
  const b = (n: number | bigint) => BigInt(n);
  const anySlot = () => rng.int(SLOTS);
  /** The indexes of the slots that satisfy `pred`. */
  const slotsWhere = (pred: (s: Slot) => boolean): number[] => slots.flatMap((s, i) => (pred(s) ? [i] : []));
  /** Where a new fd goes: an empty slot, mostly (overwriting a slot leaks its fd: the file stays open). */
  const destSlot = (): number => {
    const xs = slotsWhere((s) => s.kind === 'empty' || s.kind === 'unknown');
    if (xs.length && rng.int(10)) return rng.pick(xs);
    // never over the device: a leaked device fd would keep it busy for the rest of the stage
    const ys = slotsWhere((s) => s.kind !== 'dev');
    return ys.length ? rng.pick(ys) : anySlot();
  };
  // What the generator expects to succeed (a guess that steers it; nothing depends on results).
  const deviceOpen = (): boolean => slots.some((s) => s.kind === 'dev');
  const nameTaken = (name: number): boolean => slots.some((s) => s.session?.name === name);
  const retrieved = new Set<number>();
  /** A session slot: outgoing for PRESERVE_FD, incoming for RETRIEVE_FD and FINISH (mostly). */
  const sessionSlot = (dir: 'session' | 'incoming'): number => slotOf(rng.int(6) ? dir : dir === 'session' ? 'incoming' : 'session');
  const slotOf = (k: Kind): number => {
    const xs = slotsWhere((s) => s.kind === k);
    return xs.length && rng.int(8) ? rng.pick(xs) : anySlot();
  };
  /**
   * A memfd slot or an empty one (EBADF). With `anyOk` (read, write, lseek, seals: the shim answers
   * them for LUO's fds as the kernel does) sometimes any slot; fstat and fallocate never reach the
   * device or a session (shim gap 7: they are sockets).
   */
  const memfdSlot = (anyOk = false): number => {
    if (anyOk && !rng.int(10)) return anySlot();
    const xs = slotsWhere((s) => s.kind === 'memfd' || (s.kind === 'empty' && !rng.int(4)));
    if (xs.length) return rng.pick(xs);
    const any = slots.findIndex((s) => s.kind === 'empty' || s.kind === 'memfd');
    if (any >= 0) return any;
    const d = anySlot(); // every slot holds a device, a session or maybe one: free it
    emit('close', d);
    fill(d, 'empty');
    return d;
  };
  const nameId = (): number => (afterKexec && used.names.length && rng.int(4) ? rng.pick(used.names) : rng.int(NAME_IDS));
  const tokenId = (): number => (afterKexec && used.tokens.length && rng.int(4) ? rng.pick(used.tokens) : rng.int(TOKENS.length));
  const fill = (d: number, kind: Kind, sealable = false) => {
    slots[d] = kind === 'memfd' ? { kind, file: { sealable, noResize: false } } : { kind };
  };
  const emit = (name: OpName, ...args: (number | bigint)[]) => ops.push({ name, args: args.map(b) });
  // a device, then (before the first kexec) a session with a memfd, (after it) their retrieval
  emit('open', 0);
  fill(0, 'dev');
  if (!afterKexec) {
    const name = rng.int(6);
    const token = rng.int(TOKENS.length);
    const flags = rng.pick(MEMFD_FLAGS);
    emit('create', 1, 0, name, 0);
    fill(1, 'session');
    slots[1]!.session = { name };
    emit('memfd', 2, flags);
    fill(2, 'memfd', flags !== 0);
    emit('pwrite', 2, rng.pick([0, 100, 4096]), rng.pick([1, 4096, 9000]), rng.int(256));
    emit('preserve', 1, 2, token, 0);
    slots[2]!.file!.noResize = flags !== 0;
    used.names.push(name);
    used.tokens.push(token);
  } else if (used.names.length) {
    emit('rsession', 1, 0, used.names[0]!, 0);
    fill(1, 'incoming');
    retrieved.add(used.names[0]!);
    emit('rfd', 2, 1, used.tokens[0]!);
    fill(2, 'memfd', true);
  }
  while (ops.length < count) {
    const r = rng.int(100);
    if (r < 4) {
      const d = destSlot();
      const busy = deviceOpen();
      emit('open', d);
      fill(d, busy ? 'unknown' : 'dev');
    } else if (r < 14) {
      const d = destSlot();
      const name = rng.int(NAME_IDS);
      const size = rng.int(10) < 8 ? 0 : rng.int(SIZE_VARIANTS);
      emit('create', d, slotOf('dev'), name, size);
      const ok = deviceOpen() && name !== 6 && name !== 8 && (size === 0 || size === 2) && !nameTaken(name);
      fill(d, ok ? 'session' : 'unknown');
      if (ok) slots[d]!.session = { name };
      if (ok && !afterKexec) used.names.push(name);
    } else if (r < (afterKexec ? 24 : 16)) {
      const d = destSlot();
      const name = nameId();
      const size = rng.int(10) < 8 ? 0 : rng.int(SIZE_VARIANTS);
      emit('rsession', d, slotOf('dev'), name, size);
      const ok = deviceOpen() && used.names.includes(name) && !retrieved.has(name) && (size === 0 || size === 2);
      fill(d, ok ? 'incoming' : 'unknown');
      if (ok) retrieved.add(name);
    } else if (r < 26) {
      const d = destSlot();
      const flags = rng.pick(MEMFD_FLAGS);
      emit('memfd', d, flags);
      fill(d, 'memfd', flags !== 0);
    } else if (r < 38) {
      const m = rng.int(6) ? slotOf('memfd') : anySlot();
      const token = rng.int(TOKENS.length);
      emit('preserve', sessionSlot('session'), m, token, rng.int(10) < 8 ? 0 : rng.int(SIZE_VARIANTS));
      if (!afterKexec) used.tokens.push(token);
      const f = slots[m]!.file;
      if (f?.sealable) f.noResize = true;
    } else if (r < (afterKexec ? 48 : 40)) {
      const d = destSlot();
      emit('rfd', d, sessionSlot('incoming'), tokenId());
      // a retrieved memfd may be sealable (it carries the preserved seals): treated as such
      fill(d, 'memfd', true);
    } else if (r < 50) {
      emit('finish', sessionSlot('incoming'), rng.int(6) ? 0 : rng.pick([1, 0x80000000]));
    } else if (r < 52) {
      emit('getname', slotOf(rng.int(2) ? 'session' : 'incoming'), rng.int(6) ? 0 : 1);
    } else if (r < 58) {
      const d = anySlot();
      emit('close', d);
      fill(d, 'empty');
    } else if (r < 61) {
      const d = destSlot();
      const s = slotOf(rng.pick(['memfd', 'session', 'incoming'] as const));
      emit('dup', d, s);
      slots[d] = { ...slots[s]! }; // the same FileTag: one open file
    } else if (r < 82) {
      const k = rng.int(10);
      const m = memfdSlot(k !== 5 && k !== 8);
      const mayResize = !slots[m]!.file?.noResize;
      const off = rng.pick([0, 1, 100, 4095, 4096, 8191, 12288, 20000, 65536]);
      const len = rng.pick([0, 1, 5, 100, 4096, 5000, 8192]);
      if (k < 3) emit('pwrite', m, off, mayResize ? len : 0, rng.int(256));
      else if (k < 4 && mayResize) emit('write', m, len, rng.int(256));
      else if (k < 5 && mayResize) emit('ftruncate', m, rng.pick([0, 1, 4096, 5000, 16384, 65536]));
      else if (k < 6 && mayResize) emit('fallocate', m, rng.pick([0, 0, 1, 3]), off, rng.pick([1, 4096, 10000]));
      else if (k < 7) emit('read', m, off, len);
      else if (k < 8) emit('lseek', m, rng.pick([0, 3, 4096, 70000]), rng.int(3));
      else if (k < 9) emit('fstat', m);
      else emit('getseals', m);
    } else if (r < 88) {
      const m = memfdSlot(true);
      const seals = rng.pick(SEALS);
      // GROW/SHRINK/SEAL added by the program are fine; a sealable memfd is never resized after
      // preserve anyway. F_SEAL_WRITE forbids later writes on both paths alike.
      emit('seal', m, seals);
    } else if (r < 94) {
      emit('ioctl', anySlot(), rng.pick(IOCTL_CMDS), rng.pick([0, 1, 4, 8, 16, 72]));
    } else if (r < 96) {
      // files no handler takes (PRESERVE_FD: ENOENT), then offered to a session at once, mostly
      const d = destSlot();
      emit('other', d, rng.int(2));
      fill(d, 'unknown');
      if (rng.int(4)) emit('preserve', sessionSlot('session'), d, rng.int(TOKENS.length), 0);
    } else if (r < 98) {
      // many files in one session (several blocks), under tokens a later stage asks for
      const base = rng.pick(BULK_TOKEN_BASES);
      emit('bulk_preserve', sessionSlot('session'), rng.pick([10, 60, 200]), base);
      if (!afterKexec) used.bulkTokens.push(base);
    } else if (r < 99 || !afterKexec) {
      // many sessions (several blocks; 51 fills one exactly), names that may repeat
      const base = rng.int(3);
      emit('bulk_create', slotOf('dev'), rng.pick([3, 20, 50, 51, 52, 120]), base);
      if (!afterKexec) used.bulkBases.push(base);
    } else {
      const base = used.bulkBases.length && rng.int(4) ? rng.pick(used.bulkBases) : rng.int(3);
      emit('bulk_rsession', slotOf('dev'), rng.pick([3, 51, 120]), base);
    }
    if (afterKexec && rng.int(200) === 0 && used.bulkTokens.length) {
      emit('bulk_rfd', sessionSlot('incoming'), rng.pick([10, 60, 200]), rng.pick(used.bulkTokens));
    }
  }
  return ops.slice(0, Math.max(count, 0));
}
