/**
 * The value types of scenario files as zod schemas: text, integers, sizes ("8GiB"), u64 tokens, errno
 * names, flag lists and data specs. Each parses a YAML scalar with its own error wording ("expected a
 * size ..., got "8 GB"") and carries the JSON Schema an editor sees for it (see `jsonShape`).
 */
import * as z from 'zod';
import { ERRNO, type ErrnoName } from '../errno.ts';
import { type DataSpec, parseSize } from './data.ts';

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

const U64_MAX = 0xffffffffffffffffn;

/** A u64 token: an integer, decimal or 0x-hex (quoted or not). */
export const token: z.ZodType<bigint> = value(
  { anyOf: [{ type: 'integer', minimum: 0, maximum: Number(U64_MAX) }, { type: 'string', pattern: '^\\s*(0x[0-9a-fA-F]{1,16}|\\d+)\\s*$' }], description: 'a u64 token' },
  (v) => {
    let t: bigint | undefined;
    if (typeof v === 'bigint') t = v;
    else if (typeof v === 'number' && Number.isInteger(v)) t = BigInt(v);
    else if (typeof v === 'string' && /^(0x[0-9a-fA-F]+|\d+)$/.test(v.trim())) t = BigInt(v.trim());
    if (t === undefined) return new Refusal(`expected a token (an integer, 0x... allowed), got ${show(v)}`);
    if (t < 0n || t > U64_MAX) return new Refusal(`a token is a u64 (0 .. 0xffffffffffffffff), got ${t}`);
    return t;
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

/** Flag names, one or a list, or'ed into a number. */
export function flags(names: Readonly<Record<string, number>>): z.ZodType<number> {
  const name = oneOf(Object.keys(names));
  return listOf(name).transform((ns) => ns.reduce((acc, n) => acc | names[n]!, 0)) as unknown as z.ZodType<number>;
}

/** A data item mapping: exactly one of text, pattern or fill; `length` for pattern and fill; `at`. */
export function dataItem(ramLimit: number): z.ZodType<DataSpec> {
  return fields({ text: text().optional(), pattern: text().optional(), fill: int(0, 255).optional(), length: size.optional(), at: size.optional() }).transform((m, ctx): DataSpec => {
    const at = m.at ?? 0;
    const kinds = (['text', 'pattern', 'fill'] as const).filter((k) => m[k] !== undefined);
    if (kinds.length !== 1) {
      ctx.addIssue({ code: 'custom', message: 'give exactly one of "text", "pattern" or "fill"' });
      return z.NEVER;
    }
    if (m.text !== undefined) {
      if (m.length !== undefined) ctx.addIssue({ code: 'custom', message: '"length" goes with "pattern" or "fill", not "text"', path: ['length'], params: { atKey: true } });
      return { text: m.text, at };
    }
    if (m.length === undefined) {
      ctx.addIssue({ code: 'custom', message: 'missing required field "length"' });
      return z.NEVER;
    }
    if (at + m.length > ramLimit) {
      ctx.addIssue({ code: 'custom', path: ['length'], message: `${m.length} bytes at ${at} reach past the machine's RAM (${ramLimit} bytes, machine.ram): no memfd on it can hold them` });
      return z.NEVER;
    }
    return m.pattern !== undefined ? { pattern: m.pattern, length: m.length, at } : { fill: m.fill!, length: m.length, at };
  }) as unknown as z.ZodType<DataSpec>;
}

/** File contents: a string, a data item, or a list of strings and data items. */
export function data(ramLimit: number): z.ZodType<DataSpec[]> {
  const item = dataItem(ramLimit);
  const one = z.any().transform((v: unknown, ctx): DataSpec => (typeof v === 'string' ? { text: v, at: 0 } : delegate(item, v, ctx)));
  return listOf(withShape(one, { anyOf: [{ type: 'string' }, item] }) as unknown as z.ZodType<DataSpec>);
}

/** A mapping with exactly these fields; an unknown one is named with the list of known ones. */
export function fields<S extends Record<string, z.ZodType>>(shape: S) {
  const known = Object.keys(shape).map((k) => `"${k}"`).join(', ');
  const required = requiredKeys(shape);
  return withShape(z.strictObject(shape, { error: (iss) => (iss.code === 'unrecognized_keys' ? `(expected ${known})` : undefined) }), required.length ? { required } : {}, true);
}
