/**
 * The value types only scenario files have: u64 tokens, flag lists, and data specs (file contents by
 * text, seeded pattern or fill byte), checked against the machine's RAM.
 */
import * as z from 'zod';
import { type DataSpec } from './data.ts';
import { delegate, fields, int, listOf, oneOf, Refusal, show, size, text, value, withShape } from '../schema/values.ts';

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

