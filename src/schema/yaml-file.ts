/**
 * luo's YAML files (scenarios, fleet campaigns) checked against zod schemas: YAML parsed with its
 * source positions kept (duplicate keys, aliases and complex keys refused), the value checked, and
 * every problem reported as file:line:column, field path and message. Also the JSON Schema export
 * of such a schema, for editors.
 */
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument, visit, type Document } from 'yaml';
import * as z from 'zod';
import { jsonShape, MISSING, show, type JsonSchema } from './values.ts';

export interface SchemaIssue {
  readonly line: number;
  readonly col: number;
  /** The field, e.g. `steps[3].preserve.token`. */
  readonly path: string;
  readonly message: string;
}

/** A file that is not what its schema says: every problem, one per line as file:line:col: path: message. */
export class FileSchemaError extends Error {
  constructor(readonly file: string, readonly issues: SchemaIssue[]) {
    super(issues.map((i) => `${file}:${i.line}:${i.col}: ${i.path ? `${i.path}: ` : ''}${i.message}`).join('\n'));
    this.name = 'FileSchemaError';
  }
}

type Seg = PropertyKey;

const fieldPath = (path: readonly Seg[]): string =>
  path.map((s, i) => (typeof s === 'number' ? `[${s}]` : `${i ? '.' : ''}${String(s)}`)).join('');

export const startOf = (n: unknown): number | undefined =>
  n && typeof n === 'object' && 'range' in n ? ((n as { range?: [number, number, number] | null }).range?.[0] ?? undefined) : undefined;

/** The source offset of a field: its value, or its key (for an empty value, or when asked). */
function offsetOf(doc: Document, path: readonly Seg[], atKey: boolean): number {
  let node: unknown = doc.contents;
  let key: unknown;
  let best = startOf(node) ?? 0;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) return best;
      key = pair.key;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number' && seg < node.items.length) {
      key = undefined;
      node = node.items[seg];
    } else return best;
    best = startOf(atKey ? key : node) ?? startOf(key) ?? startOf(node) ?? best;
  }
  return best;
}

const NOUN: Readonly<Record<string, string>> = { object: 'a mapping', array: 'a list', string: 'a string', number: 'a number', boolean: 'true or false' };

/** zod's issues in the file's terms: one per problem, placed and worded. */
export function placeIssues(doc: Document, lc: LineCounter, issues: readonly z.core.$ZodIssue[]): SchemaIssue[] {
  const out: SchemaIssue[] = [];
  const put = (path: readonly Seg[], message: string, at: readonly Seg[] = path, atKey = false): void => {
    out.push({ ...lc.linePos(offsetOf(doc, at, atKey)), path: fieldPath(path), message });
  };
  for (const i of issues) {
    const params = (i as { params?: { atKey?: boolean; at?: Seg[] } }).params;
    const input = (i as { input?: unknown }).input;
    if (i.code === 'unrecognized_keys') {
      for (const k of i.keys) put([...i.path, k], `unknown field "${k}" ${i.message}`, [...i.path, k], true);
    } else if ((i.code === 'custom' && i.message === MISSING) || (i.code === 'invalid_type' && input === undefined)) {
      const parent = i.path.slice(0, -1);
      put(parent, `missing required field "${String(i.path.at(-1))}"`);
    } else if (i.code === 'invalid_type') {
      put(i.path, `expected ${NOUN[i.expected] ?? i.expected}, got ${show(input)}`);
    } else {
      put(i.path, i.message, [...i.path, ...(params?.at ?? [])], params?.atKey ?? false);
    }
  }
  return out.sort((a, b) => a.line - b.line || a.col - b.col);
}

/** YAML integers stay exact: bigints only where a number could not hold them (u64 tokens). */
const reviver = (_k: unknown, v: unknown): unknown => (typeof v === 'bigint' && Number.isSafeInteger(Number(v)) ? Number(v) : v);

/** A YAML document whose value is a mapping, positions kept. */
export interface LoadedYaml {
  readonly doc: Document;
  readonly lc: LineCounter;
  readonly raw: Record<string, unknown>;
}

/** Parses `text`; throws `fail(file, issues)` for YAML errors, complex keys, aliases past 100, or a non-mapping. */
export function loadYaml(text: string, file: string, fail: (file: string, issues: SchemaIssue[]) => Error): LoadedYaml {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, intAsBigInt: true, prettyErrors: false, uniqueKeys: true });
  const yamlIssue = (offset: number, message: string): SchemaIssue => ({ ...lc.linePos(offset), path: '', message: `YAML: ${message}` });
  if (doc.errors.length) {
    throw fail(file, doc.errors.map((e) => {
      const lp = e.linePos?.[0] ?? lc.linePos(e.pos[0]);
      return { line: lp.line, col: lp.col, path: '', message: `YAML: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}` };
    }));
  }
  const complexKeys: SchemaIssue[] = [];
  visit(doc, {
    Pair: (_k, pair) => {
      if (isPair(pair) && pair.key !== null && !isScalar(pair.key)) complexKeys.push(yamlIssue(startOf(pair.key) ?? 0, 'keys must be plain names'));
    },
  });
  if (complexKeys.length) throw fail(file, complexKeys);
  let raw: unknown;
  try {
    raw = doc.toJS({ reviver, maxAliasCount: 100 });
  } catch (e) {
    throw fail(file, [yamlIssue(0, e instanceof Error ? e.message : String(e))]);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw fail(file, [{ ...lc.linePos(startOf(doc.contents) ?? 0), path: '', message: `expected a mapping, got ${show(raw)}` }]);
  }
  return { doc, lc, raw: raw as Record<string, unknown> };
}

/** The value of `y` checked by `schema`; throws `fail` with every problem placed. */
export function checkYaml<T>(y: LoadedYaml, schema: z.ZodType<T>, file: string, fail: (file: string, issues: SchemaIssue[]) => Error): T {
  const r = schema.safeParse(y.raw, { reportInput: true });
  if (!r.success) throw fail(file, placeIssues(y.doc, y.lc, r.error.issues));
  return r.data;
}

/** Replaces each zod schema inside a shape by its JSON Schema. */
function render(shape: unknown, toJson: (s: z.ZodType) => JsonSchema): unknown {
  if (shape instanceof z.ZodType) return toJson(shape);
  if (Array.isArray(shape)) return shape.map((x) => render(x, toJson));
  if (shape && typeof shape === 'object') return Object.fromEntries(Object.entries(shape).map(([k, v]) => [k, render(v, toJson)]));
  return shape;
}

/** `schema` as JSON Schema (draft 2020-12): the shapes of values parsed by our functions included. */
export function toJsonSchema(schema: z.ZodType, meta: { id: string; title: string; description: string }): JsonSchema {
  const toJson = (s: z.ZodType): JsonSchema => {
    const { $schema: _drop, ...rest } = z.toJSONSchema(s, {
      io: 'input',
      unrepresentable: 'any',
      override: (ctx) => {
        const shape = jsonShape(ctx.zodSchema as unknown as z.ZodType);
        if (!shape) return;
        if (!shape.merge) for (const k of Object.keys(ctx.jsonSchema)) delete (ctx.jsonSchema as Record<string, unknown>)[k];
        Object.assign(ctx.jsonSchema, render(shape.json, toJson));
      },
    }) as JsonSchema;
    return rest;
  };
  return { $schema: 'https://json-schema.org/draft/2020-12/schema', $id: meta.id, title: meta.title, description: meta.description, ...toJson(schema) };
}
