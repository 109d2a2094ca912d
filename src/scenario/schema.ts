/**
 * Scenario files: YAML parsed with line and column kept, checked field by field into typed steps;
 * every problem is reported with its line, column and field path. The format is documented in
 * docs/scenario-format.md (what `luo scenario --schema` prints).
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import { ERRNO, type ErrnoName } from '../errno.ts';
import type { KhoProfile } from '../abi/kho.ts';
import { KHO_FDT_COMPATIBLE } from '../abi/kho.ts';
import { FAULT_OPS, type FaultOp } from './faults.ts';
import { type DataSpec, MEMFD_FLAG_NAMES, parseSize, SEAL_NAMES } from './data.ts';

export interface BuildSpec {
  readonly release?: string;
  readonly kho?: KhoProfile;
}

export interface MachineSpec {
  readonly ram: number;
  readonly cmdline?: string;
  readonly build?: BuildSpec;
}

export interface FaultArgs {
  readonly op: FaultOp;
  readonly errno: ErrnoName;
  readonly skip?: number;
  readonly times?: number;
  readonly handler?: string;
}

export const CORRUPTIONS = ['luo-compat', 'session-count', 'file-compat', 'file-count'] as const;
export type Corruption = (typeof CORRUPTIONS)[number];

export const AGENT_OUTCOMES = ['updated', 'fell-back', 'refused'] as const;

export interface AgentFileArgs {
  readonly token: bigint;
  readonly size?: number;
  readonly data: DataSpec[];
  readonly seals: number;
  readonly pos?: number;
  readonly label?: string;
}

export type StepArgs =
  | { readonly kind: 'open-device'; readonly as: string }
  | { readonly kind: 'close'; readonly fd: string }
  | { readonly kind: 'create-session'; readonly name: string; readonly as?: string }
  | { readonly kind: 'memfd'; readonly as: string; readonly name?: string; readonly size?: number; readonly flags: number; readonly data: DataSpec[]; readonly seals: number; readonly pos?: number }
  | { readonly kind: 'write'; readonly fd: string; readonly data: DataSpec[] }
  | { readonly kind: 'preserve'; readonly session: string; readonly fd: string; readonly token: bigint }
  | { readonly kind: 'unpreserve'; readonly session: string }
  | { readonly kind: 'inject-fault'; readonly fault: FaultArgs }
  | { readonly kind: 'corrupt'; readonly what: Corruption }
  | { readonly kind: 'kexec'; readonly cmdline?: string; readonly append?: string; readonly build?: BuildSpec; readonly expect: 'ok' | 'panic' }
  | { readonly kind: 'cold-boot'; readonly cmdline?: string; readonly build?: BuildSpec }
  | { readonly kind: 'retrieve-session'; readonly name: string; readonly as?: string }
  | { readonly kind: 'retrieve'; readonly session: string; readonly token: bigint; readonly as: string }
  | { readonly kind: 'verify'; readonly fd: string; readonly size?: number; readonly pos?: number; readonly seals?: number; readonly data: DataSpec[]; readonly sha256?: string }
  | { readonly kind: 'finish'; readonly session: string }
  | { readonly kind: 'kernel-log'; readonly contains?: string; readonly matches?: string; readonly absent: boolean }
  | { readonly kind: 'agent-adopt'; readonly workload: string; readonly files: AgentFileArgs[]; readonly checksum: 'sha256' | 'none' }
  | {
    readonly kind: 'agent-update';
    readonly cmdline?: string;
    readonly append?: string;
    readonly build?: BuildSpec;
    readonly inject: FaultArgs[];
    readonly corrupt?: Corruption;
    readonly expect: (typeof AGENT_OUTCOMES)[number];
    readonly restart?: string[];
    readonly reason?: { readonly step?: string; readonly errno?: ErrnoName };
  };

export type StepKind = StepArgs['kind'];

export interface Step {
  /** 1-based position in `steps`. */
  readonly index: number;
  readonly line: number;
  readonly col: number;
  readonly args: StepArgs;
  readonly expectErrno?: ErrnoName;
  readonly repeat: number;
  readonly note?: string;
}

export interface Scenario {
  readonly file: string;
  readonly name: string;
  readonly description?: string;
  readonly machine: MachineSpec;
  readonly steps: Step[];
}

export interface SchemaIssue {
  readonly line: number;
  readonly col: number;
  /** The field, e.g. `steps[3].preserve.token`. */
  readonly path: string;
  readonly message: string;
}

export class ScenarioSyntaxError extends Error {
  constructor(readonly file: string, readonly issues: SchemaIssue[]) {
    super(issues.map((i) => `${file}:${i.line}:${i.col}: ${i.path ? `${i.path}: ` : ''}${i.message}`).join('\n'));
    this.name = 'ScenarioSyntaxError';
  }
}

/** The first argument of each kind: what a scalar after the kind means. */
const SHORTHAND: Readonly<Record<StepKind, string | undefined>> = {
  'open-device': 'as', close: 'fd', 'create-session': 'name', memfd: 'as', write: undefined, preserve: undefined, unpreserve: 'session',
  'inject-fault': undefined, corrupt: 'what', kexec: undefined, 'cold-boot': undefined, 'retrieve-session': 'name', retrieve: undefined,
  verify: 'fd', finish: 'session', 'kernel-log': 'contains', 'agent-adopt': undefined, 'agent-update': undefined,
};
export const STEP_KINDS = Object.keys(SHORTHAND) as StepKind[];
const STEP_COMMON = ['expect-errno', 'repeat', 'note'];

type Node = unknown;
interface Field {
  readonly node: Node;
  /** The key's node (for positions of empty values). */
  readonly key: Node;
}

const DEFAULT_RAM = 4 * 2 ** 30;
const rangeOf = (n: Node): [number, number, number] | undefined => (n && typeof n === 'object' && 'range' in n ? (n as { range?: [number, number, number] | null }).range ?? undefined : undefined);
const isNull = (n: Node): boolean => n === null || n === undefined || (isScalar(n) && n.value === null);
const show = (n: Node): string => (isScalar(n) ? JSON.stringify(typeof n.value === 'bigint' ? n.value.toString() : n.value) : isSeq(n) ? 'a list' : isMap(n) ? 'a mapping' : 'nothing');

class Checker {
  readonly issues: SchemaIssue[] = [];
  /** The machine's RAM once known: no data spec may reach past it (no file can hold that much). */
  ramLimit = Infinity;

  constructor(private readonly lc: LineCounter) {}

  pos(n: Node, fallback?: Node): { line: number; col: number } {
    const r = rangeOf(n) ?? rangeOf(fallback);
    if (!r) return { line: 1, col: 1 };
    return this.lc.linePos(r[0]);
  }

  err(n: Node, path: string, message: string, fallback?: Node): undefined {
    this.issues.push({ ...this.pos(n, fallback), path, message });
    return undefined;
  }

  /** A mapping with only the given keys (true = required). */
  map(n: Node, path: string, keys: Readonly<Record<string, boolean>>, fallback?: Node): Map<string, Field> | undefined {
    if (!isMap(n)) return this.err(n, path, `expected a mapping, got ${show(n)}`, fallback);
    const out = new Map<string, Field>();
    for (const item of n.items) {
      if (!isPair(item) || !isScalar(item.key)) {
        this.err(item, path, 'keys must be plain names', n);
        continue;
      }
      const k = String(item.key.value);
      if (!(k in keys)) {
        this.err(item.key, path ? `${path}.${k}` : k, `unknown field "${k}" (expected ${Object.keys(keys).map((x) => `"${x}"`).join(', ')})`);
        continue;
      }
      out.set(k, { node: item.value, key: item.key });
    }
    for (const [k, req] of Object.entries(keys)) if (req && !out.has(k)) this.err(n, path, `missing required field "${k}"`, fallback);
    return out;
  }

  str(f: Field | undefined, path: string, opts: { nonEmpty?: boolean } = {}): string | undefined {
    if (!f) return undefined;
    const n = f.node;
    if (!isScalar(n) || n.value === null || typeof n.value === 'object') return this.err(n, path, `expected a string, got ${show(n)}`, f.key);
    const v = typeof n.value === 'string' ? n.value : String(n.value);
    if (opts.nonEmpty && v === '') return this.err(n, path, 'must not be empty', f.key);
    return v;
  }

  int(f: Field | undefined, path: string, min = 0, max = Number.MAX_SAFE_INTEGER): number | undefined {
    if (!f) return undefined;
    const n = f.node;
    const v = isScalar(n) ? n.value : undefined;
    const num = typeof v === 'bigint' ? Number(v) : v;
    if (typeof num !== 'number' || !Number.isInteger(num)) return this.err(n, path, `expected an integer, got ${show(n)}`, f.key);
    if (num < min || num > max) return this.err(n, path, `must be between ${min} and ${max}, got ${num}`, f.key);
    return num;
  }

  size(f: Field | undefined, path: string): number | undefined {
    if (!f) return undefined;
    const n = f.node;
    const v = isScalar(n) ? n.value : undefined;
    if (typeof v === 'bigint' || typeof v === 'number') {
      const num = Number(v);
      if (Number.isSafeInteger(num) && num >= 0) return num;
    } else if (typeof v === 'string') {
      const s = parseSize(v);
      if (s !== undefined) return s;
    }
    return this.err(n, path, `expected a size (bytes, or a number with B, KiB, MiB, GiB or TiB), got ${show(n)}`, f.key);
  }

  token(f: Field | undefined, path: string): bigint | undefined {
    if (!f) return undefined;
    const n = f.node;
    const v = isScalar(n) ? n.value : undefined;
    let t: bigint | undefined;
    if (typeof v === 'bigint') t = v;
    else if (typeof v === 'number' && Number.isInteger(v)) t = BigInt(v);
    else if (typeof v === 'string' && /^(0x[0-9a-fA-F]+|\d+)$/.test(v.trim())) t = BigInt(v.trim());
    if (t === undefined) return this.err(n, path, `expected a token (an integer, 0x... allowed), got ${show(n)}`, f.key);
    if (t < 0n || t > 0xffffffffffffffffn) return this.err(n, path, `a token is a u64 (0 .. 0xffffffffffffffff), got ${t}`, f.key);
    return t;
  }

  oneOf<T extends string>(f: Field | undefined, path: string, values: readonly T[]): T | undefined {
    if (!f) return undefined;
    const n = f.node;
    const v = isScalar(n) ? n.value : undefined;
    if (typeof v !== 'string' || !values.includes(v as T)) return this.err(n, path, `expected one of ${values.join(', ')}, got ${show(n)}`, f.key);
    return v as T;
  }

  errno(f: Field | undefined, path: string): ErrnoName | undefined {
    if (!f) return undefined;
    const n = f.node;
    const v = isScalar(n) ? n.value : undefined;
    if (typeof v !== 'string' || !(v in ERRNO) || v === 'ENOIOCTLCMD') {
      return this.err(n, path, `expected an errno name (${Object.keys(ERRNO).filter((e) => e !== 'ENOIOCTLCMD').join(', ')}), got ${show(n)}`, f.key);
    }
    return v as ErrnoName;
  }

  bool(f: Field | undefined, path: string): boolean | undefined {
    if (!f) return undefined;
    const n = f.node;
    if (!isScalar(n) || typeof n.value !== 'boolean') return this.err(n, path, `expected true or false, got ${show(n)}`, f.key);
    return n.value;
  }

  list(f: Field | undefined, path: string): Field[] | undefined {
    if (!f) return undefined;
    const n = f.node;
    if (isSeq(n)) return n.items.map((it) => ({ node: it, key: f.key }));
    return [f]; // a single item stands for a list of one
  }

  flags(f: Field | undefined, path: string, names: Readonly<Record<string, number>>): number | undefined {
    const items = this.list(f, path);
    if (!items) return undefined;
    let v = 0;
    items.forEach((it, i) => {
      const name = this.oneOf(it, `${path}[${i}]`, Object.keys(names));
      if (name) v |= names[name]!;
    });
    return v;
  }

  data(f: Field | undefined, path: string): DataSpec[] {
    if (!f) return [];
    const n = f.node;
    if (isScalar(n) && typeof n.value === 'string') return [{ text: n.value, at: 0 }];
    const items = isSeq(n) ? n.items.map((it) => ({ node: it as Node, key: f.key })) : [f];
    const out: DataSpec[] = [];
    items.forEach((it, i) => {
      const p = isSeq(n) ? `${path}[${i}]` : path;
      if (isScalar(it.node) && typeof it.node.value === 'string') {
        out.push({ text: it.node.value, at: 0 });
        return;
      }
      const m = this.map(it.node, p, { text: false, pattern: false, fill: false, length: false, at: false }, it.key);
      if (!m) return;
      const at = this.size(m.get('at'), `${p}.at`) ?? 0;
      const kinds = ['text', 'pattern', 'fill'].filter((k) => m.has(k));
      if (kinds.length !== 1) {
        this.err(it.node, p, 'give exactly one of "text", "pattern" or "fill"', it.key);
        return;
      }
      if (m.has('text')) {
        if (m.has('length')) this.err(m.get('length')!.key, `${p}.length`, '"length" goes with "pattern" or "fill", not "text"');
        const t = this.str(m.get('text'), `${p}.text`);
        if (t !== undefined) out.push({ text: t, at });
        return;
      }
      let length = m.has('length') ? this.size(m.get('length'), `${p}.length`) : this.err(it.node, p, `missing required field "length"`, it.key);
      if (length !== undefined && at + length > this.ramLimit) {
        length = this.err(m.get('length')!.node, `${p}.length`, `${length} bytes at ${at} reach past the machine's RAM (${this.ramLimit} bytes, machine.ram): no memfd on it can hold them`);
      }
      if (m.has('pattern')) {
        const seed = this.str(m.get('pattern'), `${p}.pattern`);
        if (seed !== undefined && length !== undefined) out.push({ pattern: seed, length, at });
      } else {
        const fill = this.int(m.get('fill'), `${p}.fill`, 0, 255);
        if (fill !== undefined && length !== undefined) out.push({ fill, length, at });
      }
    });
    return out;
  }

  build(f: Field | undefined, path: string): BuildSpec | undefined {
    if (!f) return undefined;
    const m = this.map(f.node, path, { release: false, kho: false }, f.key);
    if (!m) return undefined;
    const release = this.str(m.get('release'), `${path}.release`, { nonEmpty: true });
    const kho = this.oneOf(m.get('kho'), `${path}.kho`, Object.keys(KHO_FDT_COMPATIBLE) as KhoProfile[]);
    return { ...(release !== undefined ? { release } : {}), ...(kho !== undefined ? { kho } : {}) };
  }

  fault(f: Field, path: string): FaultArgs | undefined {
    const m = this.map(f.node, path, { op: true, errno: false, skip: false, times: false, handler: false }, f.key);
    if (!m) return undefined;
    const op = this.oneOf(m.get('op'), `${path}.op`, FAULT_OPS);
    let errno = this.errno(m.get('errno'), `${path}.errno`);
    if (op === 'finish') {
      if (errno !== undefined && errno !== 'EBUSY') this.err(m.get('errno')!.node, `${path}.errno`, 'a finish fault makes can_finish refuse: LUO reports EBUSY (omit errno or write EBUSY)');
      errno = 'EBUSY';
    } else if (op && !m.has('errno')) this.err(f.node, path, 'missing required field "errno"', f.key);
    const skip = this.int(m.get('skip'), `${path}.skip`);
    const times = this.int(m.get('times'), `${path}.times`, 1);
    const handler = this.str(m.get('handler'), `${path}.handler`, { nonEmpty: true });
    if (!op || !errno) return undefined;
    return { op, errno, ...(skip !== undefined ? { skip } : {}), ...(times !== undefined ? { times } : {}), ...(handler !== undefined ? { handler } : {}) };
  }
}

type ArgFields = Map<string, Field>;

/** Per-kind fields (true = required) and how to build the arguments. */
const KINDS: { readonly [K in StepKind]: { readonly fields: Readonly<Record<string, boolean>>; build(c: Checker, m: ArgFields, p: string): Extract<StepArgs, { kind: K }> | undefined } } = {
  'open-device': { fields: { as: false }, build: (c, m, p) => ({ kind: 'open-device', as: c.str(m.get('as'), `${p}.as`, { nonEmpty: true }) ?? 'luo' }) },
  close: {
    fields: { fd: true },
    build: (c, m, p) => {
      const fd = c.str(m.get('fd'), `${p}.fd`, { nonEmpty: true });
      return fd === undefined ? undefined : { kind: 'close', fd };
    },
  },
  'create-session': {
    fields: { name: true, as: false },
    build: (c, m, p) => {
      const name = c.str(m.get('name'), `${p}.name`);
      const as = c.str(m.get('as'), `${p}.as`, { nonEmpty: true });
      return name === undefined ? undefined : { kind: 'create-session', name, ...(as !== undefined ? { as } : {}) };
    },
  },
  memfd: {
    fields: { as: true, name: false, size: false, data: false, flags: false, seals: false, pos: false },
    build: (c, m, p) => {
      const as = c.str(m.get('as'), `${p}.as`, { nonEmpty: true });
      const name = c.str(m.get('name'), `${p}.name`);
      const size = c.size(m.get('size'), `${p}.size`);
      const data = c.data(m.get('data'), `${p}.data`);
      const flags = c.flags(m.get('flags'), `${p}.flags`, MEMFD_FLAG_NAMES) ?? 0;
      const seals = c.flags(m.get('seals'), `${p}.seals`, SEAL_NAMES) ?? 0;
      const pos = c.size(m.get('pos'), `${p}.pos`);
      if (as === undefined) return undefined;
      return { kind: 'memfd', as, ...(name !== undefined ? { name } : {}), ...(size !== undefined ? { size } : {}), flags, data, seals, ...(pos !== undefined ? { pos } : {}) };
    },
  },
  write: {
    fields: { fd: true, data: true },
    build: (c, m, p) => {
      const fd = c.str(m.get('fd'), `${p}.fd`, { nonEmpty: true });
      const data = c.data(m.get('data'), `${p}.data`);
      return fd === undefined ? undefined : { kind: 'write', fd, data };
    },
  },
  preserve: {
    fields: { session: true, fd: true, token: true },
    build: (c, m, p) => {
      const session = c.str(m.get('session'), `${p}.session`, { nonEmpty: true });
      const fd = c.str(m.get('fd'), `${p}.fd`, { nonEmpty: true });
      const token = c.token(m.get('token'), `${p}.token`);
      return session === undefined || fd === undefined || token === undefined ? undefined : { kind: 'preserve', session, fd, token };
    },
  },
  unpreserve: {
    fields: { session: true },
    build: (c, m, p) => {
      const session = c.str(m.get('session'), `${p}.session`, { nonEmpty: true });
      return session === undefined ? undefined : { kind: 'unpreserve', session };
    },
  },
  'inject-fault': {
    fields: { op: true, errno: false, skip: false, times: false, handler: false },
    build: () => undefined, // handled specially (the step's own mapping is the fault)
  },
  corrupt: {
    fields: { what: true },
    build: (c, m, p) => {
      const what = c.oneOf(m.get('what'), `${p}.what`, CORRUPTIONS);
      return what === undefined ? undefined : { kind: 'corrupt', what };
    },
  },
  kexec: {
    fields: { cmdline: false, append: false, build: false, expect: false },
    build: (c, m, p) => {
      const cmdline = c.str(m.get('cmdline'), `${p}.cmdline`);
      const append = c.str(m.get('append'), `${p}.append`);
      const build = c.build(m.get('build'), `${p}.build`);
      const expect = c.oneOf(m.get('expect'), `${p}.expect`, ['ok', 'panic'] as const) ?? 'ok';
      if (cmdline !== undefined && append !== undefined) c.err(m.get('append')!.key, `${p}.append`, 'give "cmdline" or "append", not both');
      return { kind: 'kexec', ...(cmdline !== undefined ? { cmdline } : {}), ...(append !== undefined ? { append } : {}), ...(build ? { build } : {}), expect };
    },
  },
  'cold-boot': {
    fields: { cmdline: false, build: false },
    build: (c, m, p) => {
      const cmdline = c.str(m.get('cmdline'), `${p}.cmdline`);
      const build = c.build(m.get('build'), `${p}.build`);
      return { kind: 'cold-boot', ...(cmdline !== undefined ? { cmdline } : {}), ...(build ? { build } : {}) };
    },
  },
  'retrieve-session': {
    fields: { name: true, as: false },
    build: (c, m, p) => {
      const name = c.str(m.get('name'), `${p}.name`);
      const as = c.str(m.get('as'), `${p}.as`, { nonEmpty: true });
      return name === undefined ? undefined : { kind: 'retrieve-session', name, ...(as !== undefined ? { as } : {}) };
    },
  },
  retrieve: {
    fields: { session: true, token: true, as: true },
    build: (c, m, p) => {
      const session = c.str(m.get('session'), `${p}.session`, { nonEmpty: true });
      const token = c.token(m.get('token'), `${p}.token`);
      const as = c.str(m.get('as'), `${p}.as`, { nonEmpty: true });
      return session === undefined || token === undefined || as === undefined ? undefined : { kind: 'retrieve', session, token, as };
    },
  },
  verify: {
    fields: { fd: true, size: false, pos: false, seals: false, data: false, sha256: false },
    build: (c, m, p) => {
      const fd = c.str(m.get('fd'), `${p}.fd`, { nonEmpty: true });
      const size = c.size(m.get('size'), `${p}.size`);
      const pos = c.size(m.get('pos'), `${p}.pos`);
      const seals = c.flags(m.get('seals'), `${p}.seals`, SEAL_NAMES);
      const data = c.data(m.get('data'), `${p}.data`);
      let sha256 = c.str(m.get('sha256'), `${p}.sha256`);
      if (sha256 !== undefined && !/^[0-9a-f]{64}$/i.test(sha256)) sha256 = c.err(m.get('sha256')!.node, `${p}.sha256`, 'expected 64 hex digits');
      if (fd === undefined) return undefined;
      return { kind: 'verify', fd, ...(size !== undefined ? { size } : {}), ...(pos !== undefined ? { pos } : {}), ...(seals !== undefined ? { seals } : {}), data, ...(sha256 ? { sha256: sha256.toLowerCase() } : {}) };
    },
  },
  finish: {
    fields: { session: true },
    build: (c, m, p) => {
      const session = c.str(m.get('session'), `${p}.session`, { nonEmpty: true });
      return session === undefined ? undefined : { kind: 'finish', session };
    },
  },
  'kernel-log': {
    fields: { contains: false, matches: false, absent: false },
    build: (c, m, p) => {
      const contains = c.str(m.get('contains'), `${p}.contains`, { nonEmpty: true });
      let matches = c.str(m.get('matches'), `${p}.matches`, { nonEmpty: true });
      if (matches !== undefined) {
        try {
          new RegExp(matches);
        } catch (e) {
          matches = c.err(m.get('matches')!.node, `${p}.matches`, `not a regular expression: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
      const absent = c.bool(m.get('absent'), `${p}.absent`) ?? false;
      if (m.has('contains') === m.has('matches')) {
        c.err(m.get('contains')?.key ?? m.get('matches')?.key ?? m.get('absent')?.key, p, 'give exactly one of "contains" or "matches"');
        return undefined;
      }
      return { kind: 'kernel-log', ...(contains !== undefined ? { contains } : {}), ...(matches !== undefined ? { matches } : {}), absent };
    },
  },
  'agent-adopt': {
    fields: { workload: true, files: true, checksum: false },
    build: (c, m, p) => {
      const workload = c.str(m.get('workload'), `${p}.workload`, { nonEmpty: true });
      const checksum = c.oneOf(m.get('checksum'), `${p}.checksum`, ['sha256', 'none'] as const) ?? 'sha256';
      const files: AgentFileArgs[] = [];
      (c.list(m.get('files'), `${p}.files`) ?? []).forEach((f, i) => {
        const fp = `${p}.files[${i}]`;
        const fm = c.map(f.node, fp, { token: true, size: false, data: false, seals: false, pos: false, label: false }, f.key);
        if (!fm) return;
        const token = c.token(fm.get('token'), `${fp}.token`);
        const size = c.size(fm.get('size'), `${fp}.size`);
        const data = c.data(fm.get('data'), `${fp}.data`);
        const seals = c.flags(fm.get('seals'), `${fp}.seals`, SEAL_NAMES) ?? 0;
        const pos = c.size(fm.get('pos'), `${fp}.pos`);
        const label = c.str(fm.get('label'), `${fp}.label`);
        if (token !== undefined) files.push({ token, data, seals, ...(size !== undefined ? { size } : {}), ...(pos !== undefined ? { pos } : {}), ...(label !== undefined ? { label } : {}) });
      });
      return workload === undefined ? undefined : { kind: 'agent-adopt', workload, files, checksum };
    },
  },
  'agent-update': {
    fields: { cmdline: false, append: false, build: false, inject: false, corrupt: false, expect: false, restart: false, reason: false },
    build: (c, m, p) => {
      const cmdline = c.str(m.get('cmdline'), `${p}.cmdline`);
      const append = c.str(m.get('append'), `${p}.append`);
      if (cmdline !== undefined && append !== undefined) c.err(m.get('append')!.key, `${p}.append`, 'give "cmdline" or "append", not both');
      const build = c.build(m.get('build'), `${p}.build`);
      const inject = (c.list(m.get('inject'), `${p}.inject`) ?? []).map((f, i) => c.fault(f, `${p}.inject[${i}]`)).filter((x): x is FaultArgs => x !== undefined);
      const corrupt = c.oneOf(m.get('corrupt'), `${p}.corrupt`, CORRUPTIONS);
      const expect = c.oneOf(m.get('expect'), `${p}.expect`, AGENT_OUTCOMES) ?? 'updated';
      const restart = c.list(m.get('restart'), `${p}.restart`)?.map((f, i) => c.str(f, `${p}.restart[${i}]`) ?? '');
      let reason: { step?: string; errno?: ErrnoName } | undefined;
      if (m.has('reason')) {
        const rm = c.map(m.get('reason')!.node, `${p}.reason`, { step: false, errno: false }, m.get('reason')!.key);
        if (rm) {
          const step = c.str(rm.get('step'), `${p}.reason.step`);
          const errno = c.errno(rm.get('errno'), `${p}.reason.errno`);
          reason = { ...(step !== undefined ? { step } : {}), ...(errno !== undefined ? { errno } : {}) };
        }
      }
      return {
        kind: 'agent-update', ...(cmdline !== undefined ? { cmdline } : {}), ...(append !== undefined ? { append } : {}), ...(build ? { build } : {}), inject,
        ...(corrupt ? { corrupt } : {}), expect, ...(restart ? { restart } : {}), ...(reason ? { reason } : {}),
      };
    },
  },
};

function parseStep(c: Checker, n: Node, index: number): Step | undefined {
  const path = `steps[${index - 1}]`;
  const at = c.pos(n);
  // A bare kind ("- kexec") is a step without arguments.
  if (isScalar(n) && typeof n.value === 'string') {
    const kind = n.value as StepKind;
    if (!STEP_KINDS.includes(kind)) return c.err(n, path, `unknown step kind "${n.value}" (known: ${STEP_KINDS.join(', ')})`);
    const args = buildArgs(c, kind, { node: null, key: n }, `${path}.${kind}`);
    return args ? { index, ...at, args, repeat: 1 } : undefined;
  }
  if (!isMap(n)) return c.err(n, path, `expected a step (a mapping like "- kexec: {}"), got ${show(n)}`);
  const kinds: Array<{ kind: StepKind; f: Field }> = [];
  const common = new Map<string, Field>();
  let unknown = 0;
  for (const item of n.items) {
    if (!isPair(item) || !isScalar(item.key)) {
      c.err(item, path, 'keys must be plain names', n);
      continue;
    }
    const k = String(item.key.value);
    if (STEP_KINDS.includes(k as StepKind)) kinds.push({ kind: k as StepKind, f: { node: item.value, key: item.key } });
    else if (STEP_COMMON.includes(k)) common.set(k, { node: item.value, key: item.key });
    else unknown++, c.err(item.key, `${path}.${k}`, `unknown step kind or field "${k}" (kinds: ${STEP_KINDS.join(', ')}; step fields: ${STEP_COMMON.join(', ')})`);
  }
  if (kinds.length === 0) return unknown ? undefined : c.err(n, path, `the step names no kind (one of ${STEP_KINDS.join(', ')})`);
  if (kinds.length > 1) return c.err(kinds[1]!.f.key, path, `one kind per step (found ${kinds.map((k) => `"${k.kind}"`).join(' and ')})`);
  const { kind, f } = kinds[0]!;
  const expectErrno = c.errno(common.get('expect-errno'), `${path}.expect-errno`);
  const repeat = c.int(common.get('repeat'), `${path}.repeat`, 1, 100000) ?? 1;
  const note = c.str(common.get('note'), `${path}.note`);
  if (expectErrno && (kind === 'verify' || kind === 'kernel-log' || kind === 'agent-update' || kind === 'corrupt')) {
    c.err(common.get('expect-errno')!.key, `${path}.expect-errno`, `"${kind}" makes no syscall whose errno could be expected`);
  }
  const args = buildArgs(c, kind, f, `${path}.${kind}`);
  if (!args) return undefined;
  return { index, ...c.pos(f.key), args, ...(expectErrno ? { expectErrno } : {}), repeat, ...(note !== undefined ? { note } : {}) };
}

function buildArgs(c: Checker, kind: StepKind, f: Field, path: string): StepArgs | undefined {
  const spec = KINDS[kind];
  let node = f.node;
  const sh = SHORTHAND[kind];
  if (isNull(node)) {
    const required = Object.entries(spec.fields).filter(([, r]) => r).map(([k]) => k);
    if (required.length) return c.err(f.key, path, `missing arguments (required: ${required.join(', ')})`);
    node = undefined;
  } else if (!isMap(node)) {
    if (sh && isScalar(node)) {
      // The shorthand: the scalar is the first argument.
      const m = new Map<string, Field>([[sh, { node, key: f.key }]]);
      for (const [k, req] of Object.entries(spec.fields)) if (req && k !== sh) c.err(node, path, `missing required field "${k}" (use the mapping form)`);
      if (kind === 'inject-fault') return undefined;
      return (spec.build as (c: Checker, m: ArgFields, p: string) => StepArgs | undefined)(c, m, path);
    }
    return c.err(node, path, `expected a mapping of arguments${sh ? ` or a ${sh}` : ''}, got ${show(node)}`, f.key);
  }
  if (kind === 'inject-fault') {
    const fault = c.fault({ node, key: f.key }, path);
    return fault ? { kind: 'inject-fault', fault } : undefined;
  }
  const m = node === undefined ? new Map<string, Field>() : c.map(node, path, spec.fields, f.key);
  if (!m) return undefined;
  return (spec.build as (c: Checker, m: ArgFields, p: string) => StepArgs | undefined)(c, m, path);
}

/** Parses and validates a scenario; throws ScenarioSyntaxError listing every problem. */
export function parseScenario(text: string, file = '<scenario>'): Scenario {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, intAsBigInt: true, prettyErrors: false, uniqueKeys: true });
  const c = new Checker(lc);
  if (doc.errors.length) {
    throw new ScenarioSyntaxError(file, doc.errors.map((e) => {
      const lp = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
      return { line: lp.line, col: lp.col, path: '', message: `YAML: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}` };
    }));
  }
  const top = c.map(doc.contents, '', { name: false, description: false, machine: false, steps: true });
  if (!top) throw new ScenarioSyntaxError(file, c.issues);
  const name = c.str(top.get('name'), 'name') ?? file.replace(/^.*\//, '').replace(/\.ya?ml$/, '');
  const description = c.str(top.get('description'), 'description');
  let machine: MachineSpec = { ram: DEFAULT_RAM };
  const mf = top.get('machine');
  if (mf) {
    const mm = c.map(mf.node, 'machine', { ram: false, cmdline: false, build: false }, mf.key);
    if (mm) {
      const ram = c.size(mm.get('ram'), 'machine.ram') ?? DEFAULT_RAM;
      if (mm.has('ram') && ram < 64 << 20) c.err(mm.get('ram')!.node, 'machine.ram', 'at least 64MiB');
      if (mm.has('ram') && ram % 4096 !== 0) c.err(mm.get('ram')!.node, 'machine.ram', 'must be a whole number of 4KiB pages');
      const cmdline = c.str(mm.get('cmdline'), 'machine.cmdline');
      const build = c.build(mm.get('build'), 'machine.build');
      machine = { ram, ...(cmdline !== undefined ? { cmdline } : {}), ...(build ? { build } : {}) };
    }
  }
  c.ramLimit = machine.ram;
  const steps: Step[] = [];
  const sf = top.get('steps');
  if (sf) {
    if (!isSeq(sf.node)) c.err(sf.node, 'steps', `expected a list of steps, got ${show(sf.node)}`, sf.key);
    else if (sf.node.items.length === 0) c.err(sf.node, 'steps', 'needs at least one step', sf.key);
    else sf.node.items.forEach((it, i) => {
      const s = parseStep(c, it, i + 1);
      if (s) steps.push(s);
    });
  }
  if (c.issues.length) throw new ScenarioSyntaxError(file, c.issues.sort((a, b) => a.line - b.line || a.col - b.col));
  return { file, name, ...(description !== undefined ? { description } : {}), machine, steps };
}
