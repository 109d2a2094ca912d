/** PhysicalMemory: lazy storage, byte access across pages and states, live page views, poisoning. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PhysicalMemory, POISON_BYTE, POISON_PATTERN, isPoisoned } from '../../src/machine/memory.ts';
import { isLuoError } from '../../src/errno.ts';

const KiB = 1024n;
const MiB = 1024n * KiB;
const GiB = 1024n * MiB;
const TiB = 1024n * GiB;

test('a 1 TiB machine costs a few pages after a few writes; untouched memory reads as zeros', () => {
  const mem = new PhysicalMemory({ size: TiB });
  assert.equal(mem.nrPages, 2 ** 28);
  mem.writeU64(0x1000n, 0x1122334455667788n);
  mem.writeU32(TiB - 4n, 0xdeadbeef);
  mem.write(512n * GiB + 3n, Uint8Array.of(1, 2, 3));
  const s = mem.stats();
  assert.equal(s.touchedPages, 3);
  assert.ok(s.hostBytes < 4 * 8192, `host bytes ${s.hostBytes}`);
  assert.equal(mem.readU64(0x1000n), 0x1122334455667788n);
  assert.equal(mem.readU32(TiB - 4n), 0xdeadbeef);
  assert.deepEqual(mem.read(512n * GiB, 8), Uint8Array.of(0, 0, 0, 1, 2, 3, 0, 0));
  assert.deepEqual(mem.read(700n * GiB, 4096), new Uint8Array(4096));
  assert.equal(mem.pageState(1), 'data');
  assert.equal(mem.pageState(2), 'zero');
  assert.equal(mem.stats().touchedPages, 3, 'reads do not materialise pages');
});

test('reads and writes spanning pages, unaligned, in little-endian', () => {
  const mem = new PhysicalMemory({ size: 4n * MiB });
  const data = Uint8Array.from({ length: 3 * 4096 + 77 }, (_, i) => (i * 7 + 3) & 0xff);
  mem.write(4096n - 5n, data);
  assert.deepEqual(mem.read(4096n - 5n, data.length), data);
  assert.deepEqual(mem.read(4096n - 6n, 1), Uint8Array.of(0));
  mem.writeU64(8192n - 3n, 0x0102030405060708n);
  assert.deepEqual(mem.read(8192n - 3n, 8), Uint8Array.of(8, 7, 6, 5, 4, 3, 2, 1));
  assert.equal(mem.readU64(8192n - 3n), 0x0102030405060708n);
  mem.writeU32(12288n - 2n, 0xa1b2c3d4);
  assert.equal(mem.readU32(12288n - 2n), 0xa1b2c3d4);
  assert.equal(mem.read(0n, 0).length, 0);
});

test('page(pfn) is a live, writable view', () => {
  const mem = new PhysicalMemory({ size: 1n * MiB });
  const v = mem.page(3);
  assert.equal(v.length, 4096);
  v[10] = 0xab;
  assert.equal(mem.read(3n * 4096n + 10n, 1)[0], 0xab);
  mem.write(3n * 4096n + 11n, Uint8Array.of(0xcd));
  assert.equal(v[11], 0xcd);
  mem.zero(3n * 4096n, 4096);
  assert.equal(v[10], 0, 'zeroing a stored page clears it in place');
  v[0] = 1;
  assert.equal(mem.read(3n * 4096n, 1)[0], 1, 'the view stays live after zero()');
});

test('out-of-range accesses are EFAULT naming the address', () => {
  const mem = new PhysicalMemory({ size: 1n * MiB });
  const efault = (f: () => unknown, addr: string) =>
    assert.throws(f, (e: unknown) => isLuoError(e, 'EFAULT') && (e as Error).message.includes(addr));
  efault(() => mem.read(MiB - 4n, 8), '0xffffc');
  efault(() => mem.write(MiB, Uint8Array.of(1)), '0x100000');
  efault(() => mem.readU64(-8n), '-0x8');
  efault(() => mem.page(256), 'pfn 256');
  efault(() => mem.poisonExcept([{ start: 0n, end: MiB + 1n }]), '0x100001');
  assert.throws(() => new PhysicalMemory({ size: 4095 }), (e: unknown) => isLuoError(e, 'EINVAL'));
});

test('fill and zero: partial pages, whole pages, over poison', () => {
  const mem = new PhysicalMemory({ size: 1n * MiB });
  mem.fill(100n, 10000, 0x77);
  const r = mem.read(0n, 10200);
  for (let i = 0; i < r.length; i++) assert.equal(r[i], i >= 100 && i < 10100 ? 0x77 : 0, `byte ${i}`);
  mem.poisonExcept([{ start: 0n, end: 8192n }]);
  // Page 2 (bytes 8192..) was DATA and is now poison; zero a range that covers pages 3..9 whole.
  assert.ok(isPoisoned(mem.read(8192n, 4096), 8192n));
  mem.zero(12288n - 10n, 7 * 4096 + 20);
  assert.equal(mem.pageState(5), 'zero');
  assert.equal(mem.stats().touchedPages, 4, 'pages 0, 1 kept; pages 2 and 10 materialised for the partial edges');
  assert.deepEqual(mem.read(12288n - 10n, 7 * 4096 + 20), new Uint8Array(7 * 4096 + 20));
  assert.ok(isPoisoned(mem.read(12288n - 20n, 10), 12288n - 20n));
  assert.ok(isPoisoned(mem.read(12288n + 7n * 4096n + 10n, 100), 12288n + 7n * 4096n + 10n));
});

test('the poison pattern is recognisable and anchored at physical addresses', () => {
  assert.equal(POISON_PATTERN.length, 8);
  assert.equal(POISON_PATTERN[0], POISON_BYTE);
  assert.equal(new TextDecoder().decode(POISON_PATTERN), 'ZZPOISNZ');
  const mem = new PhysicalMemory({ size: 1n * MiB });
  mem.poisonExcept([]);
  assert.ok(isPoisoned(mem.read(5n, 3000), 5n));
  assert.ok(!isPoisoned(mem.read(5n, 3000), 6n));
  assert.equal(mem.readU64(0n), 0x5a4e53494f505a5an);
  assert.equal(mem.pageState(0), 'poison');
  // Writing into a poisoned page keeps the rest of the page poisoned.
  mem.write(4096n + 100n, Uint8Array.of(1));
  assert.ok(isPoisoned(mem.read(4096n, 100), 4096n));
  assert.ok(isPoisoned(mem.read(4096n + 101n, 3995), 4096n + 101n));
});

test('poisonExcept keeps exactly the kept pages (property)', () => {
  const SIZE = 256n * 4096n;
  const range = fc.tuple(fc.integer({ min: 0, max: Number(SIZE) }), fc.integer({ min: 0, max: 5 * 4096 })).map(([s, l]) => ({
    start: BigInt(s),
    end: BigInt(Math.min(s + l, Number(SIZE))),
  }));
  const write = fc.tuple(fc.integer({ min: 0, max: Number(SIZE) - 1 }), fc.uint8Array({ minLength: 1, maxLength: 9000 }));
  fc.assert(
    fc.property(fc.array(range, { maxLength: 12 }), fc.array(write, { maxLength: 12 }), fc.boolean(), (keep, writes, twice) => {
      const mem = new PhysicalMemory({ size: SIZE });
      const shadow = new Uint8Array(Number(SIZE));
      for (const [at, bytes] of writes) {
        const b = bytes.subarray(0, Number(SIZE) - at);
        mem.write(BigInt(at), b);
        shadow.set(b, at);
      }
      if (twice) mem.poisonExcept([{ start: 0n, end: SIZE / 2n }]);
      mem.poisonExcept(keep);
      const keptPage = new Uint8Array(256);
      for (const k of keep) {
        for (let p = Math.floor(Number(k.start) / 4096); p < Math.ceil(Number(k.end) / 4096); p++) keptPage[p] = 1;
      }
      const all = mem.read(0n, Number(SIZE));
      for (let p = 0; p < 256; p++) {
        const got = all.subarray(p * 4096, (p + 1) * 4096);
        const keptNow = keptPage[p] === 1 && (!twice || p < 128);
        if (keptNow) assert.deepEqual(got, shadow.subarray(p * 4096, (p + 1) * 4096), `kept page ${p}`);
        else assert.ok(isPoisoned(got, BigInt(p * 4096)), `page ${p} should be poisoned`);
      }
    }),
    { numRuns: 150 },
  );
});

test('poisonExcept on 1 TiB with 360 000 kept ranges stays small (no per-page work)', () => {
  const mem = new PhysicalMemory({ size: TiB });
  for (let i = 0n; i < 64n; i++) mem.writeU64(i * 16n * GiB + 8n, i + 1n);
  const keep: { start: bigint; end: bigint }[] = [];
  const stride = 4n * MiB;
  // 512 GiB kept as 262 144 ranges of 2 MiB (every other 2 MiB), plus 100 000 scattered single pages.
  for (let i = 0n; i < 262_144n; i++) keep.push({ start: i * stride, end: i * stride + 2n * MiB });
  let seed = 12345;
  for (let i = 0; i < 100_000; i++) {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    const pfn = BigInt(seed % 2 ** 28);
    keep.push({ start: pfn * 4096n, end: pfn * 4096n + 4096n });
  }
  mem.poisonExcept(keep);
  const s = mem.stats();
  assert.equal(s.touchedPages, 64, 'every write landed in a kept 2 MiB range');
  assert.ok(s.zeroRanges <= 362_144, `zero ranges ${s.zeroRanges}`);
  assert.ok(s.hostBytes < 16 * 2 ** 20, `host bytes ${s.hostBytes}`);
  assert.equal(mem.readU64(16n * GiB + 8n), 2n);
  assert.equal(mem.pageState(0x200000 / 4096), 'poison');
  assert.ok(isPoisoned(mem.read(2n * MiB, 64), 2n * MiB) || mem.pageState(512) === 'zero');
  assert.equal(mem.pageState(1), 'zero');
});

test('runs() describes the page states of a range', () => {
  const mem = new PhysicalMemory({ size: 64n * 4096n });
  mem.write(4096n * 3n, Uint8Array.of(1));
  mem.write(4096n * 4n, Uint8Array.of(1));
  mem.poisonExcept([{ start: 0n, end: 4096n * 10n }]);
  assert.deepEqual([...mem.runs(0, 12)], [
    { state: 'zero', pfn: 0, count: 3 },
    { state: 'data', pfn: 3, count: 2 },
    { state: 'zero', pfn: 5, count: 5 },
    { state: 'poison', pfn: 10, count: 2 },
  ]);
});

test('readInto copies zero, poison and data pages into a caller buffer, at an offset; a buffer too small is EINVAL', () => {
  const mem = new PhysicalMemory({ size: 1n << 20n });
  mem.write(4096n, new Uint8Array(4096).fill(7));
  mem.poisonExcept([{ start: 0n, end: 8192n }]);
  const out = new Uint8Array(3 * 4096 + 10).fill(0xee);
  mem.readInto(0n, out, 10, 3 * 4096);
  assert.ok(out.subarray(0, 10).every((b) => b === 0xee), 'bytes before the offset untouched');
  assert.ok(out.subarray(10, 4106).every((b) => b === 0), 'a zero page reads as zeros, even over old bytes');
  assert.ok(out.subarray(4106, 8202).every((b) => b === 7));
  assert.ok(isPoisoned(out.subarray(8202), 8192n), 'a poisoned page');
  assert.deepEqual(mem.read(4096n, 8), new Uint8Array(8).fill(7));
  assert.throws(() => mem.readInto(0n, out, 20, 3 * 4096), (e: unknown) => isLuoError(e, 'EINVAL') && /do not fit a buffer/.test((e as Error).message));
});
