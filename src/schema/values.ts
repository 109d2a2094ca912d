/**
 * Value types of luo's YAML files (scenarios, fleet campaigns) as zod schemas: text, integers, sizes
 * ("8GiB"), errno names, enumerations, one-or-a-list, strict mappings. Each parses a YAML scalar with
 * its own error wording ("expected a size ..., got "8 GB"") and carries the JSON Schema an editor sees
 * for it (see `jsonShape`).
 */
import * as z from 'zod';
import { ERRNO, type ErrnoName } from '../errno.ts';

export const SIZE_UNITS: Readonly<Record<string, number>> = { B: 1, K: 1024, KiB: 1024, M: 1 << 20, MiB: 1 << 20, G: 2 ** 30, GiB: 2 ** 30, T: 2 ** 40, TiB: 2 ** 40 };

/** "4096", "4KiB", "1 MiB", "8GiB" (binary units only); undefined if malformed or not a safe integer. */
export function parseSize(s: string): number | undefined {
  const m = /^\s*(\d+)\s*([A-Za-z]*)\s*$/.exec(s);
  if (!m) return undefined;
  const unit = m[2] || 'B';
  const mul = SIZE_UNITS[unit];
  if (mul === undefined) return undefined;
  const v = Number(m[1]) * mul;
  return Number.isSafeInteger(v) ? v : undefined;
}

export type JsonSchema = Record<string, unknown>;

/**
 * JSON Schemas that replace zod's own rendering of a schema (for values parsed by our functions); a
 * zod schema inside one stands for its own JSON Schema.
 */
const SHAPES = new WeakMap<z.ZodType, { readonly json: JsonSchema; readonly merge: boolean }>();

/** `s` renders as `json` (or as zod renders it plus `json`, with `merge`). */
export function withShape<S extends z.ZodType>(s: S, json: JsonSchema, merge = false): S {
  SHAPES.set(s, { json, merge });
  return s;
}

export function jsonShape(s: z.ZodType): { readonly json: JsonSchema; readonly merge: boolean } | undefined {
  return SHAPES.get(s);
}

/** Fields whose schema refuses an absent value. */
export function requiredKeys(shape: Readonly<Record<string, z.ZodType>>): string[] {
  return Object.entries(shape).filter(([, s]) => !s.safeParse(undefined).success).map(([k]) => k);
}

/** How a value was found, for messages: `"8 GB"`, `5`, `a list`, `a mapping`, `nothing`. */
export function show(v: unknown): string {
  if (v === null || v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return JSON.stringify(typeof v === 'bigint' ? v.toString() : v);
}

/** Marks an issue as "this required field is absent" (the parser words it with the field's name). */
export const MISSING = 'missing';

/** A parse result: the value, or why not. */
export class Refusal {
  constructor(readonly message: string) {}
}

/** A value parsed by `parse` (given the YAML value; undefined only when the field is absent). */
export function value<T>(json: JsonSchema, parse: (v: unknown) => T | Refusal): z.ZodType<T> {
  const s = z.any().transform((v: unknown, ctx): T => {
    const r = v === undefined ? new Refusal(MISSING) : parse(v);
    if (r instanceof Refusal) {
      ctx.addIssue({ code: 'custom', message: r.message, input: v });
      return z.NEVER;
    }
    return r;
  });
  return withShape(s, json) as unknown as z.ZodType<T>;
}

/** A string; numbers and booleans are taken as written (`as: 1` names "1"). */
export function text(opts: { nonEmpty?: boolean; pattern?: RegExp; patternMessage?: string } = {}): z.ZodType<string> {
  const json: JsonSchema = { type: ['string', 'number', 'boolean'], ...(opts.nonEmpty ? { minLength: 1 } : {}), ...(opts.pattern ? { type: 'string', pattern: opts.pattern.source } : {}) };
  return value(json, (v) => {
    if (typeof v === 'object' || v === null) return new Refusal(`expected a string, got ${show(v)}`);
    const s = String(v);
    if (opts.nonEmpty && s === '') return new Refusal('must not be empty');
    if (opts.pattern && !opts.pattern.test(s)) return new Refusal(opts.patternMessage ?? `does not match ${opts.pattern.source}`);
    return s;
  });
}

export function int(min = 0, max = Number.MAX_SAFE_INTEGER): z.ZodType<number> {
  return value({ type: 'integer', minimum: min, maximum: max }, (v) => {
    const n = typeof v === 'bigint' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isInteger(n)) return new Refusal(`expected an integer, got ${show(v)}`);
    if (n < min || n > max) return new Refusal(`must be between ${min} and ${max}, got ${n}`);
    return n;
  });
}

export const SIZE_PATTERN = /^\s*\d+\s*(B|K|KiB|M|MiB|G|GiB|T|TiB)?\s*$/;

/** Bytes: an integer, or a number with a binary unit ("4KiB", "8 GiB"). */
export const size: z.ZodType<number> = value(
  { anyOf: [{ type: 'integer', minimum: 0 }, { type: 'string', pattern: SIZE_PATTERN.source }], description: 'bytes: an integer, or a number with B, KiB, MiB, GiB or TiB' },
  (v) => {
    if (typeof v === 'bigint' || typeof v === 'number') {
      const n = Number(v);
      if (Number.isSafeInteger(n) && n >= 0) return n;
    } else if (typeof v === 'string') {
      const s = parseSize(v);
      if (s !== undefined) return s;
    }
    return new Refusal(`expected a size (bytes, or a number with B, KiB, MiB, GiB or TiB), got ${show(v)}`);
  },
);

export function oneOf<const T extends string>(values: readonly T[]): z.ZodType<T> {
  return value({ enum: [...values] }, (v) =>
    typeof v === 'string' && (values as readonly string[]).includes(v) ? (v as T) : new Refusal(`expected one of ${values.join(', ')}, got ${show(v)}`));
}

/** Errno names a scenario may expect or inject (the kernel-internal ENOIOCTLCMD never reaches userspace). */
export const ERRNO_NAMES = Object.keys(ERRNO).filter((e) => e !== 'ENOIOCTLCMD') as ErrnoName[];

export const errno: z.ZodType<ErrnoName> = value({ enum: ERRNO_NAMES }, (v) =>
  typeof v === 'string' && (ERRNO_NAMES as string[]).includes(v) ? (v as ErrnoName) : new Refusal(`expected an errno name (${ERRNO_NAMES.join(', ')}), got ${show(v)}`));

export const bool: z.ZodType<boolean> = value({ type: 'boolean' }, (v) => (typeof v === 'boolean' ? v : new Refusal(`expected true or false, got ${show(v)}`)));

/**
 * Parses `raw` with `schema`, re-raising its issues on `ctx` under `prefix`; the value, or NEVER.
 * For values whose shape is decided by looking at them (one item or a list of items, a shorthand).
 */
export function delegate<T>(schema: z.ZodType<T>, raw: unknown, ctx: z.RefinementCtx, prefix: PropertyKey[] = []): T {
  const r = schema.safeParse(raw, { reportInput: true });
  if (r.success) return r.data;
  for (const i of r.error.issues) ctx.addIssue({ ...(i as z.core.$ZodIssueCustom), path: [...prefix, ...i.path] });
  return z.NEVER;
}

/** One item, or a list of them: always a list. */
export function listOf<T>(item: z.ZodType<T>): z.ZodType<T[]> {
  const s = z.any().transform((v: unknown, ctx): T[] => (Array.isArray(v) ? delegate(z.array(item), v, ctx) : [delegate(item, v, ctx)]));
  return withShape(s, { anyOf: [item, { type: 'array', items: item }] }) as unknown as z.ZodType<T[]>;
}

/** A mapping with exactly these fields; an unknown one is named with the list of known ones. */
export function fields<S extends Record<string, z.ZodType>>(shape: S) {
  const known = Object.keys(shape).map((k) => `"${k}"`).join(', ');
  const required = requiredKeys(shape);
  return withShape(z.strictObject(shape, { error: (iss) => (iss.code === 'unrecognized_keys' ? `(expected ${known})` : undefined) }), required.length ? { required } : {}, true);
}
