/**
 * Scenario files as zod schemas: the typed steps the runner executes, each step kind's arguments with
 * their shorthand, and the whole file. The same schemas validate files (parse.ts adds line, column and
 * field to every problem) and export the JSON Schema editors use (`luo scenario --json-schema`). The
 * format is documented in docs/scenario-format.md (what `luo scenario --schema` prints).
 */
import * as z from 'zod';
import { FileSchemaError, type SchemaIssue } from '../schema/yaml-file.ts';
import type { ErrnoName } from '../errno.ts';
import type { KhoProfile } from '../abi/kho.ts';
import type { SubsystemDecl } from '../kernel/build.ts';
import { KHO_FDT_COMPATIBLE } from '../abi/kho.ts';
import { RELEASES } from '../abi/releases.ts';
import { REFUSING_LAYERS, type RefusingLayer } from '../agent/diagnose.ts';
import { FAULT_OPS, FIXED_ERRNO, type FaultOp } from './faults.ts';
import { type DataSpec, MEMFD_FLAG_NAMES, SEAL_NAMES } from './data.ts';
import { bool, delegate, errno, fields, int, listOf, MISSING, oneOf, requiredKeys, show, size, text, withShape } from '../schema/values.ts';
import { data, flags, token } from './values.ts';

export interface BuildSpec {
  readonly release?: string;
  readonly kho?: KhoProfile;
  /** CONFIG_LIVEUPDATE_TEST: the test module's three FLBs on every file handler. */
  readonly test?: boolean;
}

export interface MachineSpec {
  readonly ram: number;
  readonly cmdline?: string;
  /** A release of the catalogue (luo releases): the ABI the kernel speaks. */
  readonly release?: string;
  readonly build?: BuildSpec;
  /** File handler plugin modules built into every kernel of the scenario (paths relative to the file). */
  readonly handlers?: readonly string[];
  /** Subsystems in every kernel of the scenario, each handing over its u64 at the freeze. */
  readonly subsystems?: readonly SubsystemDecl[];
}

export interface FaultArgs {
  readonly op: FaultOp;
  readonly errno: ErrnoName;
  readonly skip?: number;
  readonly times?: number;
  readonly handler?: string;
  /** flb-* faults: the FLB's compatible. */
  readonly flb?: string;
  /** subsystem-* faults: the subsystem's name. */
  readonly subsystem?: string;
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
  | { readonly kind: 'plugin-open'; readonly handler: string; readonly as: string; readonly args?: unknown }
  | { readonly kind: 'plugin-check'; readonly fd: string; readonly expect: unknown }
  | { readonly kind: 'subsystem-check'; readonly name: string; readonly data?: bigint }
  | { readonly kind: 'flb-check'; readonly name: string; readonly files?: number; readonly incoming?: FlbIncomingExpect }
  | { readonly kind: 'preserve'; readonly session: string; readonly fd: string; readonly token: bigint }
  | { readonly kind: 'unpreserve'; readonly session: string }
  | { readonly kind: 'inject-fault'; readonly fault: FaultArgs }
  | { readonly kind: 'corrupt'; readonly what: Corruption }
  | { readonly kind: 'kexec'; readonly cmdline?: string; readonly append?: string; readonly release?: string; readonly build?: BuildSpec; readonly expect: 'ok' | 'panic' }
  | { readonly kind: 'cold-boot'; readonly cmdline?: string; readonly release?: string; readonly build?: BuildSpec }
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
    readonly release?: string;
    readonly build?: BuildSpec;
    readonly inject: FaultArgs[];
    readonly corrupt?: Corruption;
    readonly expect: (typeof AGENT_OUTCOMES)[number];
    /** How the agent falls back when the live update fails (default cold-boot). */
    readonly fallback?: 'cold-boot' | 'fresh-kexec';
    readonly restart?: string[];
    readonly reason?: { readonly step?: string; readonly errno?: ErrnoName; readonly layer?: RefusingLayer };
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

export type { SchemaIssue } from '../schema/yaml-file.ts';

/** A scenario file that is not valid: every problem with its file:line:col and field. */
export class ScenarioSyntaxError extends FileSchemaError {
  constructor(file: string, issues: SchemaIssue[]) {
    super(file, issues);
    this.name = 'ScenarioSyntaxError';
  }
}


const DEFAULT_RAM = 4 * 2 ** 30;
const STEP_COMMON = ['expect-errno', 'repeat', 'note'] as const;
/** Kinds that make no syscall, so no errno can be expected of them. */
const NO_ERRNO: readonly StepKind[] = ['verify', 'kernel-log', 'agent-update', 'corrupt'];

type Args<K extends StepKind> = Extract<StepArgs, { kind: K }>;
type Shape = z.ZodObject<Record<string, z.ZodType>>;

/** One step kind: its argument mapping, the field a lone scalar stands for, and the typed arguments. */
interface KindSpec<K extends StepKind> {
  readonly shape: Shape;
  readonly shorthand?: string;
  readonly build: (m: Record<string, unknown>, ctx: z.RefinementCtx) => Args<K>;
}

/** An issue that `parse.ts` places at the field's key rather than at its value. */
const atKey = { atKey: true };
const issue = (ctx: z.RefinementCtx, message: string, path: PropertyKey[] = [], params?: object): void =>
  ctx.addIssue({ code: 'custom', message, path, ...(params ? { params } : {}) });

const name = () => text({ nonEmpty: true });
const opt = <T extends Record<string, unknown>>(o: T): Partial<T> => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;

/** A release of the catalogue, by name or uname. */
const release = (): z.ZodType<string> => oneOf(RELEASES.flatMap((r) => [r.name, r.uname]));

function buildSpec(): z.ZodType<BuildSpec> {
  return fields({ release: name().optional(), kho: oneOf(Object.keys(KHO_FDT_COMPATIBLE) as KhoProfile[]).optional(), test: bool.optional() }).transform((m) => opt(m) as BuildSpec);
}

function faultSpec(): z.ZodType<FaultArgs> {
  return fields({
    op: oneOf(FAULT_OPS), errno: errno.optional(), skip: int().optional(), times: int(1).optional(), handler: name().optional(), flb: text().optional(), subsystem: text().optional(),
  }).transform((m, ctx): FaultArgs => {
    let e = m.errno;
    const fixed = FIXED_ERRNO[m.op];
    if (fixed) {
      const what = m.op === 'finish' ? 'a finish fault makes can_finish refuse: LUO reports EBUSY' : 'a can-preserve fault makes can_preserve refuse: LUO reports ENOENT';
      if (e !== undefined && e !== fixed) issue(ctx, `${what} (omit errno or write ${fixed})`, ['errno']);
      e = fixed;
    } else if (e === undefined) {
      issue(ctx, 'missing required field "errno"');
      return z.NEVER;
    }
    if (m.op.startsWith('flb-') && m.flb === undefined) issue(ctx, `a ${m.op} fault names the FLB: flb: <compatible>`, ['flb']);
    if (m.op.startsWith('subsystem-') && m.subsystem === undefined) issue(ctx, `a ${m.op} fault names the subsystem: subsystem: <name>`, ['subsystem']);
    return { op: m.op, errno: e, ...opt({ skip: m.skip, times: m.times, handler: m.handler, flb: m.flb, subsystem: m.subsystem }) };
  }) as unknown as z.ZodType<FaultArgs>;
}

function cmdlineOrAppend(m: { cmdline?: string; append?: string }, ctx: z.RefinementCtx): void {
  if (m.cmdline !== undefined && m.append !== undefined) issue(ctx, 'give "cmdline" or "append", not both', ['append'], atKey);
}

/** Every step kind's arguments (data specs may not reach past `ramLimit`, the machine's RAM). */
function kinds(ramLimit: number): { readonly [K in StepKind]: KindSpec<K> } {
  const dataSpec = data(ramLimit);
  const seals = flags(SEAL_NAMES);
  return {
    'open-device': { shape: fields({ as: name().optional() }), shorthand: 'as', build: (m) => ({ kind: 'open-device', as: (m.as as string | undefined) ?? 'luo' }) },
    close: { shape: fields({ fd: name() }), shorthand: 'fd', build: (m) => ({ kind: 'close', fd: m.fd as string }) },
    'create-session': { shape: fields({ name: text(), as: name().optional() }), shorthand: 'name', build: (m) => ({ kind: 'create-session', name: m.name as string, ...opt({ as: m.as as string | undefined }) }) },
    memfd: {
      shape: fields({ as: name(), name: text().optional(), size: size.optional(), data: dataSpec.optional(), flags: flags(MEMFD_FLAG_NAMES).optional(), seals: seals.optional(), pos: size.optional() }),
      shorthand: 'as',
      build: (m) => ({
        kind: 'memfd', as: m.as as string, ...opt({ name: m.name as string | undefined, size: m.size as number | undefined }), flags: (m.flags as number | undefined) ?? 0,
        data: (m.data as DataSpec[] | undefined) ?? [], seals: (m.seals as number | undefined) ?? 0, ...opt({ pos: m.pos as number | undefined }),
      }),
    },
    write: { shape: fields({ fd: name(), data: dataSpec }), build: (m) => ({ kind: 'write', fd: m.fd as string, data: m.data as DataSpec[] }) },
    'plugin-open': {
      shape: fields({ handler: text(), as: name(), args: z.unknown().optional() }),
      build: (m) => ({ kind: 'plugin-open', handler: m.handler as string, as: m.as as string, ...(m.args !== undefined ? { args: m.args } : {}) }),
    },
    'plugin-check': { shape: fields({ fd: name(), expect: z.unknown() }), build: (m) => ({ kind: 'plugin-check', fd: m.fd as string, expect: m.expect }) },
    'subsystem-check': {
      shape: fields({ name: text(), data: token.optional() }), shorthand: 'name',
      build: (m) => ({ kind: 'subsystem-check', name: m.name as string, ...(m.data !== undefined ? { data: m.data as bigint } : {}) }),
    },
    'flb-check': {
      shape: fields({ name: text(), files: int().optional(), incoming: fields({ files: int().optional(), data: token.optional(), state: oneOf(['waiting', 'retrieved', 'finished'] as const).optional() }).optional() }),
      shorthand: 'name',
      build: (m) => ({ kind: 'flb-check', name: m.name as string, ...opt({ files: m.files as number | undefined, incoming: m.incoming as FlbIncomingExpect | undefined }) }),
    },
    preserve: { shape: fields({ session: name(), fd: name(), token }), build: (m) => ({ kind: 'preserve', session: m.session as string, fd: m.fd as string, token: m.token as bigint }) },
    unpreserve: { shape: fields({ session: name() }), shorthand: 'session', build: (m) => ({ kind: 'unpreserve', session: m.session as string }) },
    'inject-fault': { shape: fields({ fault: faultSpec() }), build: (m) => ({ kind: 'inject-fault', fault: m.fault as FaultArgs }) },
    corrupt: { shape: fields({ what: oneOf(CORRUPTIONS) }), shorthand: 'what', build: (m) => ({ kind: 'corrupt', what: m.what as Corruption }) },
    kexec: {
      shape: fields({ cmdline: text().optional(), append: text().optional(), release: release().optional(), build: buildSpec().optional(), expect: oneOf(['ok', 'panic'] as const).optional() }),
      build: (m, ctx) => {
        cmdlineOrAppend(m, ctx);
        return {
          kind: 'kexec', ...opt({ cmdline: m.cmdline as string | undefined, append: m.append as string | undefined, release: m.release as string | undefined, build: m.build as BuildSpec | undefined }),
          expect: (m.expect as 'ok' | 'panic' | undefined) ?? 'ok',
        };
      },
    },
    'cold-boot': {
      shape: fields({ cmdline: text().optional(), release: release().optional(), build: buildSpec().optional() }),
      build: (m) => ({ kind: 'cold-boot', ...opt({ cmdline: m.cmdline as string | undefined, release: m.release as string | undefined, build: m.build as BuildSpec | undefined }) }),
    },
    'retrieve-session': { shape: fields({ name: text(), as: name().optional() }), shorthand: 'name', build: (m) => ({ kind: 'retrieve-session', name: m.name as string, ...opt({ as: m.as as string | undefined }) }) },
    retrieve: { shape: fields({ session: name(), token, as: name() }), build: (m) => ({ kind: 'retrieve', session: m.session as string, token: m.token as bigint, as: m.as as string }) },
    verify: {
      shape: fields({
        fd: name(), size: size.optional(), pos: size.optional(), seals: seals.optional(), data: dataSpec.optional(),
        sha256: text({ pattern: /^[0-9a-fA-F]{64}$/, patternMessage: 'expected 64 hex digits' }).optional(),
      }),
      shorthand: 'fd',
      build: (m) => ({
        kind: 'verify', fd: m.fd as string, ...opt({ size: m.size as number | undefined, pos: m.pos as number | undefined, seals: m.seals as number | undefined }),
        data: (m.data as DataSpec[] | undefined) ?? [], ...opt({ sha256: (m.sha256 as string | undefined)?.toLowerCase() }),
      }),
    },
    finish: { shape: fields({ session: name() }), shorthand: 'session', build: (m) => ({ kind: 'finish', session: m.session as string }) },
    'kernel-log': {
      shape: withShape(fields({ contains: name().optional(), matches: regexText().optional(), absent: bool.optional() }), { oneOf: [{ required: ['contains'] }, { required: ['matches'] }] }, true),
      shorthand: 'contains',
      build: (m, ctx) => {
        if ((m.contains === undefined) === (m.matches === undefined)) issue(ctx, 'give exactly one of "contains" or "matches"');
        return { kind: 'kernel-log', ...opt({ contains: m.contains as string | undefined, matches: m.matches as string | undefined }), absent: (m.absent as boolean | undefined) ?? false };
      },
    },
    'agent-adopt': {
      shape: fields({ workload: name(), files: listOf(agentFile(dataSpec, seals)), checksum: oneOf(['sha256', 'none'] as const).optional() }),
      build: (m) => ({ kind: 'agent-adopt', workload: m.workload as string, files: m.files as AgentFileArgs[], checksum: (m.checksum as 'sha256' | 'none' | undefined) ?? 'sha256' }),
    },
    'agent-update': {
      shape: fields({
        cmdline: text().optional(), append: text().optional(), release: release().optional(), build: buildSpec().optional(), inject: listOf(faultSpec()).optional(), corrupt: oneOf(CORRUPTIONS).optional(),
        expect: oneOf(AGENT_OUTCOMES).optional(), fallback: oneOf(['cold-boot', 'fresh-kexec'] as const).optional(), restart: listOf(text()).optional(),
        reason: fields({ step: text().optional(), errno: errno.optional(), layer: oneOf(REFUSING_LAYERS).optional() }).optional(),
      }),
      build: (m, ctx) => {
        cmdlineOrAppend(m, ctx);
        return {
          kind: 'agent-update', ...opt({ cmdline: m.cmdline as string | undefined, append: m.append as string | undefined, release: m.release as string | undefined, build: m.build as BuildSpec | undefined }),
          inject: (m.inject as FaultArgs[] | undefined) ?? [], ...opt({ corrupt: m.corrupt as Corruption | undefined }), expect: (m.expect as Args<'agent-update'>['expect'] | undefined) ?? 'updated',
          ...opt({ fallback: m.fallback as 'cold-boot' | 'fresh-kexec' | undefined, restart: m.restart as string[] | undefined, reason: m.reason === undefined ? undefined : opt(m.reason as Record<string, unknown>) as Args<'agent-update'>['reason'] }),
        };
      },
    },
  };
}

function regexText(): z.ZodType<string> {
  return name().transform((s, ctx) => {
    try {
      new RegExp(s);
      return s;
    } catch (e) {
      issue(ctx, `not a regular expression: ${e instanceof Error ? e.message : String(e)}`);
      return z.NEVER;
    }
  }) as unknown as z.ZodType<string>;
}

function agentFile(dataSpec: z.ZodType<DataSpec[]>, seals: z.ZodType<number>): z.ZodType<AgentFileArgs> {
  return fields({ token, size: size.optional(), data: dataSpec.optional(), seals: seals.optional(), pos: size.optional(), label: text().optional() }).transform((m): AgentFileArgs => ({
    token: m.token, data: m.data ?? [], seals: m.seals ?? 0, ...opt({ size: m.size, pos: m.pos, label: m.label }),
  })) as unknown as z.ZodType<AgentFileArgs>;
}

export const STEP_KINDS = Object.keys(kinds(Infinity)) as StepKind[];

/**
 * A kind's arguments as written: nothing (when no field is required), the shorthand scalar, or the
 * mapping. `inject-fault`'s mapping is the fault itself.
 */
function argsOf<K extends StepKind>(kind: K, spec: KindSpec<K>): z.ZodType<Args<K>> {
  const full = spec.shape.transform((m, ctx) => spec.build(m, ctx));
  const mapping: z.ZodType = kind === 'inject-fault' ? (spec.shape.shape.fault as z.ZodType) : spec.shape;
  const required = kind === 'inject-fault' ? ['op'] : requiredKeys(spec.shape.shape);
  const sh = spec.shorthand;
  const s = z.any().transform((v: unknown, ctx): Args<K> => {
    if (v === null || v === undefined) {
      if (required.length) {
        issue(ctx, `missing arguments (required: ${required.join(', ')})`, [], atKey);
        return z.NEVER;
      }
      return delegate(full, {}, ctx);
    }
    if (typeof v !== 'object' || Array.isArray(v)) {
      if (!sh || Array.isArray(v)) {
        issue(ctx, `expected a mapping of arguments${sh ? ` or a ${sh}` : ''}, got ${show(v)}`);
        return z.NEVER;
      }
      const others = required.filter((k) => k !== sh);
      for (const k of others) issue(ctx, `missing required field "${k}" (use the mapping form)`);
      return others.length ? z.NEVER : delegate(full, { [sh]: v }, ctx);
    }
    // a fault's fields are the step's: issues keep their paths (not under "fault")
    if (kind === 'inject-fault') return delegate(faultSpec().transform((fault) => ({ kind, fault }) as Args<K>), v, ctx);
    return delegate(full, v, ctx);
  });
  const forms = [...(required.length ? [] : [{ type: 'null' }]), ...(sh ? [spec.shape.shape[sh]] : []), mapping];
  return withShape(s, { anyOf: forms }) as unknown as z.ZodType<Args<K>>;
}

/** What a step's mapping holds besides its kind. */
interface StepBody {
  readonly args: StepArgs;
  readonly expectErrno?: ErrnoName;
  readonly repeat: number;
  readonly note?: string;
}

/** The mapping form of a step of `kind`: the kind's arguments and the fields every step may have. */
function stepOf<K extends StepKind>(kind: K, spec: KindSpec<K>): z.ZodType<StepBody> {
  const common = { 'expect-errno': errno.optional(), repeat: int(1, 100000).optional(), note: text().optional() };
  const mapping = withShape(fields({ [kind]: argsOf(kind, spec), ...common }), { required: [kind] }, true);
  return mapping.transform((m, ctx): StepBody => {
    const expectErrno = m['expect-errno'] as ErrnoName | undefined;
    if (expectErrno && NO_ERRNO.includes(kind)) issue(ctx, `"${kind}" makes no syscall whose errno could be expected`, ['expect-errno'], atKey);
    return { args: (m as Record<string, unknown>)[kind] as StepArgs, ...opt({ expectErrno }), repeat: (m.repeat as number | undefined) ?? 1, ...opt({ note: m.note as string | undefined }) };
  }) as unknown as z.ZodType<StepBody>;
}

/**
 * Validates a step: a bare kind ("- kexec") or a mapping naming exactly one kind. Finding the kind
 * first gives the plain messages (an unknown kind, two kinds, none) a union of kinds could not.
 */
function stepDispatch(steps: { readonly [K in StepKind]: z.ZodType<StepBody> }): z.ZodType<StepBody> {
  const kindList = STEP_KINDS.join(', ');
  return z.any().transform((v: unknown, ctx): StepBody => {
    if (typeof v === 'string') {
      if (!(STEP_KINDS as string[]).includes(v)) {
        issue(ctx, `unknown step kind "${v}" (known: ${kindList})`);
        return z.NEVER;
      }
      return delegate(steps[v as StepKind], { [v]: null }, ctx);
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) {
      issue(ctx, `expected a step (a mapping like "- kexec: {}"), got ${show(v)}`);
      return z.NEVER;
    }
    const keys = Object.keys(v);
    const found = keys.filter((k) => (STEP_KINDS as string[]).includes(k)) as StepKind[];
    const unknown = keys.filter((k) => !found.includes(k as StepKind) && !(STEP_COMMON as readonly string[]).includes(k));
    for (const k of unknown) issue(ctx, `unknown step kind or field "${k}" (kinds: ${kindList}; step fields: ${STEP_COMMON.join(', ')})`, [k], atKey);
    if (found.length === 0) {
      if (!unknown.length) issue(ctx, `the step names no kind (one of ${kindList})`);
      return z.NEVER;
    }
    if (found.length > 1) {
      issue(ctx, `one kind per step (found ${found.map((k) => `"${k}"`).join(' and ')})`, [], { at: [found[1]], atKey: true });
      return z.NEVER;
    }
    const known = Object.fromEntries(Object.entries(v).filter(([k]) => !unknown.includes(k)));
    return delegate(steps[found[0]!], known, ctx);
  }) as unknown as z.ZodType<StepBody>;
}

export interface ScenarioBody {
  readonly name?: string;
  readonly description?: string;
  readonly machine: MachineSpec;
  readonly steps: StepBody[];
}

/** What a flb-check expects of what the previous kernel handed over to an FLB. */
export interface FlbIncomingExpect {
  readonly files?: number;
  readonly data?: bigint;
  readonly state?: 'waiting' | 'retrieved' | 'finished';
}

/** The machine a scenario starts on. */
function machineSpec(): z.ZodType<MachineSpec> {
  return fields({
    ram: size.optional(), cmdline: text().optional(), release: release().optional(), build: buildSpec().optional(), handlers: listOf(text()).optional(),
    subsystems: listOf(fields({
      name: text(), data: token,
      fail: fields({ op: oneOf(['prepare', 'freeze'] as const), errno, times: int(1).optional() }).optional(),
    })).optional(),
  }).transform((m, ctx): MachineSpec => {
    if (m.ram !== undefined && m.ram < 64 << 20) issue(ctx, 'at least 64MiB', ['ram']);
    if (m.ram !== undefined && m.ram % 4096 !== 0) issue(ctx, 'must be a whole number of 4KiB pages', ['ram']);
    return {
      ram: m.ram ?? DEFAULT_RAM, ...opt({ cmdline: m.cmdline, release: m.release, build: m.build }), ...(m.handlers ? { handlers: m.handlers } : {}),
      ...(m.subsystems ? { subsystems: m.subsystems as SubsystemDecl[] } : {}),
    };
  }) as unknown as z.ZodType<MachineSpec>;
}

/** Schemas per machine RAM size (data specs are checked against it). */
const cache = new Map<number, z.ZodType<ScenarioBody>>();

/** The schema a scenario file is checked with, for a machine of `ramLimit` bytes. */
export function scenarioSchema(ramLimit: number): z.ZodType<ScenarioBody> {
  let s = cache.get(ramLimit);
  if (!s) {
    const specs = kinds(ramLimit);
    const steps = Object.fromEntries(STEP_KINDS.map((k) => [k, stepOf(k, specs[k] as KindSpec<typeof k>)])) as { [K in StepKind]: z.ZodType<StepBody> };
    const stepList = (step: z.ZodType<StepBody>): z.ZodType<StepBody[]> =>
      withShape(
        z.any().transform((v: unknown, ctx): StepBody[] => {
          if (!Array.isArray(v)) {
            issue(ctx, v === undefined ? MISSING : `expected a list of steps, got ${show(v)}`);
            return z.NEVER;
          }
          if (v.length === 0) {
            issue(ctx, 'needs at least one step');
            return z.NEVER;
          }
          return delegate(z.array(step), v, ctx);
        }),
        { type: 'array', minItems: 1, items: { anyOf: [{ enum: STEP_KINDS.filter((k) => steps[k].safeParse({ [k]: null }).success) }, ...STEP_KINDS.map((k) => steps[k])] } },
      ) as unknown as z.ZodType<StepBody[]>;
    const file = (step: z.ZodType<StepBody>) =>
      fields({ name: text().optional(), description: text().optional(), machine: machineSpec().optional(), steps: stepList(step) }).transform((m): ScenarioBody => ({
        ...opt({ name: m.name, description: m.description }), machine: m.machine ?? { ram: DEFAULT_RAM }, steps: m.steps,
      }));
    s = file(stepDispatch(steps)) as unknown as z.ZodType<ScenarioBody>;
    cache.set(ramLimit, s);
  }
  return s;
}


export { DEFAULT_RAM };
