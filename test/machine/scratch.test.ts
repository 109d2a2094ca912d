/** KHO scratch: the kernel's kho_scratch= parse rules, sizing, placement against the real capture, array and debugfs codecs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import {
  CMA_MIN_ALIGNMENT_BYTES,
  decodeScratchArray,
  encodeScratchArray,
  formatScratchDebugfs,
  memparse,
  parseKhoScratch,
  parseScratchDebugfs,
  reserveScratch,
  roundUpU64,
  scratchOverlap,
  scratchSizeNode,
  scratchSizes,
} from '../../src/machine/scratch.ts';
import { Memblock, MEMBLOCK_RSRV_KERN, MEMBLOCK_KHO_SCRATCH } from '../../src/machine/memblock.ts';
import { PageAllocator } from '../../src/machine/page-alloc.ts';
import { isLuoError } from '../../src/errno.ts';

const KiB = 1n << 10n;
const MiB = 1n << 20n;
const GiB = 1n << 30n;
const fixture = (p: string) => readFileSync(new URL(`../fixtures/real-kernel/${p}`, import.meta.url), 'utf8');

test('memparse: bases as simple_strtoull picks them, K/M/G/T/P/E suffixes', () => {
  const cases: [string, bigint, number][] = [
    ['0', 0n, 1],
    ['64M', 64n * MiB, 3],
    ['64m', 64n * MiB, 3],
    ['1G', GiB, 2],
    ['2k', 2n * KiB, 2],
    ['1T', 1n << 40n, 2],
    ['1P', 1n << 50n, 2],
    ['1E', 1n << 60n, 2],
    ['0x10M', 16n * MiB, 5],
    ['0x1E', 0x1en, 4], // E is a hex digit here, not a suffix
    ['010', 8n, 3], // leading 0: octal
    ['08', 0n, 1], // octal stops at 8
    ['0x', 0n, 1], // no hex digit after 0x: octal 0, stops at x
    ['16x', 16n, 2],
    ['abc', 0n, 0],
    ['', 0n, 0],
    ['32GB', 32n * GiB, 3],
  ];
  for (const [s, v, end] of cases) assert.deepEqual(memparse(s), { value: v, end }, s);
  // u64 wrap on overflow, as the kernel computes it.
  assert.equal(memparse('18446744073709551617').value, 1n);
  assert.equal(memparse('16E').value, 0n);
});

test('kho_scratch=: valid strings', () => {
  assert.deepEqual(parseKhoScratch('200%'), { kind: 'scale', scale: 200 });
  assert.deepEqual(parseKhoScratch('50%'), { kind: 'scale', scale: 50 });
  assert.deepEqual(parseKhoScratch('+7%'), { kind: 'scale', scale: 7 });
  assert.deepEqual(parseKhoScratch('0%'), { kind: 'scale', scale: 0 });
  assert.deepEqual(parseKhoScratch('4294967295%'), { kind: 'scale', scale: 4294967295 });
  assert.deepEqual(parseKhoScratch('10\n%'), { kind: 'scale', scale: 10 }, 'kstrtouint takes one trailing newline');
  assert.deepEqual(parseKhoScratch('16M,512M,256M'), { kind: 'sizes', lowmem: 16n * MiB, global: 512n * MiB, pernode: 256n * MiB });
  assert.deepEqual(parseKhoScratch('0,0,1'), { kind: 'sizes', lowmem: 0n, global: 0n, pernode: 1n });
  assert.deepEqual(parseKhoScratch('0x1000,1G,0'), { kind: 'sizes', lowmem: 0x1000n, global: GiB, pernode: 0n });
});

test('kho_scratch=: malformed strings are EINVAL', () => {
  const bad = [
    '',
    '%',
    '-5%',
    'x%',
    '10 %',
    '4294967296%', // > UINT_MAX (-ERANGE in the kernel)
    '12345678901%', // 12 characters
    '0x10%', // base 10 only
    '1M',
    '1M,2M',
    '1M,2M,',
    '1M,,2M',
    ',1M,2M',
    '1M,2M,3M,',
    '1M,2M,3M\n',
    '1M;2M;3M',
    '0,0,0',
    '0M,0x0,00',
    '9223372036854775808,9223372036854775808,0', // sums to 0 mod 2^64
    ' 1M,2M,3M',
    '08,1,1',
  ];
  for (const s of bad) assert.throws(() => parseKhoScratch(s), (e: unknown) => isLuoError(e, 'EINVAL'), JSON.stringify(s));
});

test('round_up in u64 and the sizing formula', () => {
  assert.equal(roundUpU64(0n, CMA_MIN_ALIGNMENT_BYTES), 0n);
  assert.equal(roundUpU64(1n, CMA_MIN_ALIGNMENT_BYTES), 2n * MiB);
  assert.equal(roundUpU64(2n * MiB, CMA_MIN_ALIGNMENT_BYTES), 2n * MiB);
  assert.equal(roundUpU64((1n << 64n) - 5n * MiB, CMA_MIN_ALIGNMENT_BYTES), (1n << 64n) - 4n * MiB);
  assert.equal(roundUpU64((1n << 64n) - 1n * MiB, CMA_MIN_ALIGNMENT_BYTES), 0n, 'wraps to 0');

  const def = { kind: 'scale', scale: 200 } as const;
  // 1 GiB machine: everything is low memory, so global = round_up(2K - lowmem) wraps to 0.
  const K = 35n * MiB + 512n * KiB;
  assert.deepEqual(scratchSizes(def, K, K), { lowmem: 72n * MiB, global: 0n });
  // Memory above 4 GiB: the global area takes the rest.
  assert.deepEqual(scratchSizes(def, 30n * MiB, 100n * MiB), { lowmem: 60n * MiB, global: 140n * MiB });
  assert.deepEqual(scratchSizes({ kind: 'scale', scale: 50 }, 3n * MiB, 9n * MiB), { lowmem: 2n * MiB, global: 4n * MiB });
  assert.deepEqual(scratchSizes({ kind: 'scale', scale: 0 }, K, K), { lowmem: 0n, global: 0n });
  // Explicit sizes are taken as given; only the per-node size is rounded.
  const explicit = { kind: 'sizes', lowmem: 3n * MiB, global: 5n * MiB + 1n, pernode: 1n } as const;
  assert.deepEqual(scratchSizes(explicit, K, K), { lowmem: 3n * MiB, global: 5n * MiB + 1n });
  assert.equal(scratchSizeNode(explicit, K), 2n * MiB);
  assert.equal(scratchSizeNode(def, K + 72n * MiB + 48n), 216n * MiB);
  assert.equal(scratchSizeNode(def, 36n * MiB + 72n * MiB), 216n * MiB);
  assert.equal(scratchSizeNode(def, 36n * MiB + 72n * MiB + 1n), 218n * MiB);
});

test('the formula over the whole bracket the real capture allows: K in (35 MiB, 36 MiB - 48]', () => {
  fc.assert(
    fc.property(fc.bigInt({ min: 35n * MiB + 1n, max: 36n * MiB - 48n }), (K) => {
      const { lowmem, global } = scratchSizes({ kind: 'scale', scale: 200 }, K, K);
      assert.equal(lowmem, 0x4800000n);
      assert.equal(global, 0n);
      assert.equal(scratchSizeNode({ kind: 'scale', scale: 200 }, K + lowmem + 48n), 0xd800000n);
    }),
  );
  assert.notEqual(scratchSizes({ kind: 'scale', scale: 200 }, 35n * MiB, 35n * MiB).lowmem, 0x4800000n);
});

/** The 1 GiB QEMU guest of the capture, rebuilt from its serial log (e820 RAM, nokaslr kernel at 16 MiB). */
function captureGuest(): Memblock {
  const log = fixture('logs/fixtures-serial.log');
  const mb = new Memblock();
  const firstBoot = log.slice(0, log.indexOf('=== CMDLINE'));
  for (const m of firstBoot.matchAll(/^\s+node\s+(\d+): \[mem (0x[0-9a-f]+)-(0x[0-9a-f]+)\]/gm)) {
    mb.addMemory(BigInt(m[2]!), BigInt(m[3]!) + 1n - BigInt(m[2]!), Number(m[1]));
  }
  const total = /Memory: \d+K\/(\d+)K available/.exec(firstBoot);
  assert.equal(mb.memorySize(), BigInt(total![1]!) * KiB, 'RAM matches the "Memory:" line');
  // Reservations: the first MiB and the initrd (11376K, right below the top of RAM) are not
  // RSRV_KERN; the kernel image, early page tables and the memblock allocations made before KHO
  // (here 6 + 13.5 + 16 MiB = K = 35.5 MiB) are.
  mb.reserve(0n, MiB);
  mb.reserve(0x3ffe0000n - 11376n * KiB, 11376n * KiB);
  mb.reserve(0x1000000n, 6n * MiB, MEMBLOCK_RSRV_KERN);
  mb.reserve(0x1600000n, 0xd80000n, MEMBLOCK_RSRV_KERN);
  mb.reserve(0x3e000000n, 16n * MiB, MEMBLOCK_RSRV_KERN);
  assert.equal(mb.reservedKernSize(0xffffffffn), 35n * MiB + 512n * KiB);
  return mb;
}

test('kho_reserve_scratch on the rebuilt capture guest places the areas where the real kernel did', () => {
  const mb = captureGuest();
  const { areas, arrayAddr } = reserveScratch(mb);
  const real = parseScratchDebugfs(fixture('debugfs/s1-boot/out/scratch_phys'), fixture('debugfs/s1-boot/out/scratch_len'));
  assert.deepEqual(real, [
    { addr: 0x39800000n, size: 0x4800000n },
    { addr: 0x3f400000n, size: 0n },
    { addr: 0x2c000000n, size: 0xd800000n },
  ]);
  assert.deepEqual(areas, real);
  assert.equal(arrayAddr % 4096n, 0n);
  assert.ok(mb.isReserved(arrayAddr, 48n));
  assert.ok(!mb.isReserved(0x3f400000n), 'the 0-byte global area reserves nothing');
  // Byte-exact debugfs text.
  const text = formatScratchDebugfs(areas);
  assert.equal(text.scratch_phys, fixture('debugfs/s1-boot/out/scratch_phys'));
  assert.equal(text.scratch_len, fixture('debugfs/s1-boot/out/scratch_len'));
  // The next kernel: same areas marked scratch, early allocations only inside them.
  const next = new Memblock();
  for (const r of mb.memoryRegions()) next.addMemory(r.base, r.size, r.nid);
  next.markScratch(decodeScratchArray(encodeScratchArray(areas)));
  next.setScratchOnly(true);
  const pa = next.alloc(MiB, 4096n);
  assert.ok(scratchOverlap(areas, pa, MiB));
  assert.deepEqual(
    next.memoryRegions().filter((r) => r.flags & MEMBLOCK_KHO_SCRATCH).map((r) => [r.base, r.base + r.size - 1n]),
    [[0x2c000000n, 0x3dffffffn]],
    'as the second boot log shows: node 0 [0x2c000000-0x3dffffff] is one scratch region',
  );
  // And the page allocator keeps non-movable allocations out of it.
  const alloc = PageAllocator.fromMemblock(next);
  assert.equal(alloc.freePagesCount({ movable: true }) - alloc.freePagesCount(), (0x3e000000 - 0x2c000000) / 4096 - 256);
});

test('reserveScratch failures release everything and say which area', () => {
  const mb = new Memblock();
  mb.addMemory(0n, 64n * MiB);
  mb.reserve(0n, 8n * MiB, MEMBLOCK_RSRV_KERN);
  const before = mb.reservedRegions();
  assert.throws(
    () => reserveScratch(mb, { kind: 'sizes', lowmem: 16n * MiB, global: 64n * MiB, pernode: 0n }),
    (e: unknown) => isLuoError(e, 'ENOMEM') && /global scratch buffer/.test((e as Error).message),
  );
  assert.deepEqual(mb.reservedRegions(), before);
  const ok = reserveScratch(mb, { kind: 'sizes', lowmem: 4n * MiB, global: 4n * MiB, pernode: 4n * MiB }, { nodes: [0] });
  assert.equal(ok.areas.length, 3);
  for (const a of ok.areas) assert.equal(a.addr % CMA_MIN_ALIGNMENT_BYTES, 0n);
  assert.ok(!scratchOverlap(ok.areas.slice(0, 1), ok.areas[1]!.addr, ok.areas[1]!.size));
});

test('scratch array codec: 16 bytes per entry, little-endian; bad lengths are EINVAL (property)', () => {
  const area = fc.record({ addr: fc.bigInt({ min: 0n, max: (1n << 63n) - 1n }), size: fc.bigInt({ min: 0n, max: (1n << 62n) - 1n }) });
  fc.assert(
    fc.property(fc.array(area, { maxLength: 10 }), (generated) => {
      const areas = generated.map((a) => ({ addr: a.addr, size: a.size }));
      const b = encodeScratchArray(areas);
      assert.equal(b.length, areas.length * 16);
      assert.deepEqual(decodeScratchArray(b), areas);
      const t = formatScratchDebugfs(areas);
      assert.deepEqual(parseScratchDebugfs(t.scratch_phys, t.scratch_len), areas);
    }),
  );
  assert.deepEqual([...encodeScratchArray([{ addr: 0x39800000n, size: 0x4800000n }])], [0, 0, 0x80, 0x39, 0, 0, 0, 0, 0, 0, 0x80, 4, 0, 0, 0, 0]);
  assert.throws(() => decodeScratchArray(new Uint8Array(24)), (e: unknown) => isLuoError(e, 'EINVAL') && /multiple of 16/.test((e as Error).message));
  const wrap = new Uint8Array(16).fill(0xff);
  assert.throws(() => decodeScratchArray(wrap), (e: unknown) => isLuoError(e, 'EINVAL'));
  for (const [p, l] of [
    ['0x1\n', '0x1\n0x2\n'],
    ['0x1', '0x1'],
    ['1\n', '0x1\n'],
    ['0X1\n', '0x1\n'],
    ['0x1\n\n', '0x1\n0x1\n'],
  ] as const) {
    assert.throws(() => parseScratchDebugfs(p, l), (e: unknown) => isLuoError(e, 'EINVAL'), JSON.stringify([p, l]));
  }
});
