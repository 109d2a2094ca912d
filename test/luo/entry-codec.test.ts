/**
 * The per-entry fast codecs write and read exactly what LuoSessionSer/LuoFileSer do: same bytes,
 * same decoded values, same errors for invalid values (names beyond Latin-1, long names, u64s out
 * of range, offsets out of bounds).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { LuoFileSer, LuoSessionSer } from '../../src/abi/luo.ts';
import { decodeFileEntry, decodeSessionEntry, encodeFileEntry, encodeSessionEntry } from '../../src/luo/entry-codec.ts';

const u64 = fc.oneof(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.constantFrom(0n, 1n, (1n << 64n) - 1n, 1n << 63n));
const anyU64 = fc.oneof(u64, fc.bigInt({ min: -(1n << 65n), max: 1n << 65n }));
const name = fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 70 }), fc.string({ unit: 'grapheme-ascii', maxLength: 70 }),
  fc.constantFrom('', 's-1', 'x'.repeat(63), 'y'.repeat(64), 'é'.repeat(40), 'ÿ€', 'a\0b', '\u{1F600}'));

function outcome(f: () => void): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    return `${(e as Error).name}: ${(e as Error).message}`;
  }
}

test('session entries: fast encode/decode equal LuoSessionSer byte for byte, errors included', () => {
  fc.assert(fc.property(name, anyU64, anyU64, fc.integer({ min: -8, max: 4096 }), fc.uint8Array({ minLength: 4096, maxLength: 4096 }), (n, files, count, off, bg) => {
    const a = bg.slice();
    const b = bg.slice();
    const ea = outcome(() => LuoSessionSer.encode({ name: n, files, count }, a, off));
    const eb = outcome(() => encodeSessionEntry(b, off, n, files, count));
    assert.equal(eb, ea);
    assert.deepEqual(Buffer.from(b), Buffer.from(a));
    assert.equal(outcome(() => decodeSessionEntry(b, off)), outcome(() => LuoSessionSer.decode(a, off)));
    if (off >= 0 && off + 80 <= 4096) assert.deepEqual(decodeSessionEntry(b, off), LuoSessionSer.decode(a, off));
  }), { numRuns: 3000 });
});

test('file entries: fast encode/decode equal LuoFileSer byte for byte, errors included', () => {
  fc.assert(fc.property(name, anyU64, anyU64, fc.integer({ min: -8, max: 4096 }), fc.uint8Array({ minLength: 4096, maxLength: 4096 }), (c, data, token, off, bg) => {
    const a = bg.slice();
    const b = bg.slice();
    assert.equal(outcome(() => encodeFileEntry(b, off, c, data, token)), outcome(() => LuoFileSer.encode({ compatible: c, data, token }, a, off)));
    assert.deepEqual(Buffer.from(b), Buffer.from(a));
    assert.equal(outcome(() => decodeFileEntry(b, off)), outcome(() => LuoFileSer.decode(a, off)));
    if (off >= 0 && off + 64 <= 4096) assert.deepEqual(decodeFileEntry(b, off), LuoFileSer.decode(a, off));
  }), { numRuns: 3000 });
});

test('non-bigint values fall back to the generic codec and fail like it', () => {
  const a = new Uint8Array(4096);
  const b = new Uint8Array(4096);
  const bad = [5, undefined, '1', null] as unknown as bigint[];
  for (const v of bad) {
    assert.equal(outcome(() => encodeFileEntry(b, 16, 'memfd-v2', v, 1n)), outcome(() => LuoFileSer.encode({ compatible: 'memfd-v2', data: v, token: 1n }, a, 16)));
    assert.equal(outcome(() => encodeSessionEntry(b, 16, 's', 0n, v)), outcome(() => LuoSessionSer.encode({ name: 's', files: 0n, count: v }, a, 16)));
    assert.deepEqual(Buffer.from(b), Buffer.from(a));
  }
  assert.equal(outcome(() => encodeFileEntry(b, 16, 7 as unknown as string, 1n, 1n)), outcome(() => LuoFileSer.encode({ compatible: 7 as unknown as string, data: 1n, token: 1n }, a, 16)));
});
