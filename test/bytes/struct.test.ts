/** Sizes and field offsets of every ABI struct against the spec tables, and codec round trips. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { defineStruct, u16, u32, u64, s32, cstr, pad, bytes } from '../../src/bytes/struct.ts';
import { BoundsError, ByteReader, ByteWriter, readCString, writeCString } from '../../src/bytes/cursor.ts';
import * as kho from '../../src/abi/kho.ts';
import * as luo from '../../src/abi/luo.ts';
import * as uapi from '../../src/abi/uapi.ts';

// [layout, sizeof, { field: offset }] as ../shared/spec/kernel-abi.md lists them.
const table: Array<[{ name: string; size: number; offsets: Record<string, number> }, number, Record<string, number>]> = [
  [luo.LuoSer, 32, { compatible: 0, liveupdate_num: 8, sessions_pa: 16, flbs_pa: 24 }],
  [luo.KhoBlockHeader, 16, { next: 0, count: 8 }],
  [luo.LuoSessionSer, 80, { name: 0, files: 64, count: 72 }],
  [luo.LuoFileSer, 64, { compatible: 0, data: 48, token: 56 }],
  [luo.LuoFlbHeaderSer, 16, { pgcnt: 0, count: 8 }],
  [luo.LuoFlbSer, 64, { name: 0, data: 48, count: 56 }],
  [luo.MemfdLuoFolioSer, 16, { pfn_flags: 0, index: 8 }],
  [luo.MemfdLuoSer, 48, { pos: 0, size: 8, seals: 16, flags: 20, nr_folios: 24, folios_first: 32, folios_total_pages: 40, folios_flags: 44, folios_order: 46 }],
  [luo.MemfdLuoSerV1, 40, { pos: 0, size: 8, nr_folios: 16, folios_first: 24 }],
  [kho.KhoVmalloc, 16, { first: 0, total_pages: 8, flags: 12, order: 14 }],
  [kho.KhoScratch, 16, { addr: 0, size: 8 }],
  [kho.KhoData, 32, { fdt_addr: 0, fdt_size: 8, scratch_addr: 16, scratch_size: 24 }],
  [kho.KexecMetadata, 73, { version: 0, previous_release: 4, kexec_count: 69 }],
  [kho.KhoMemChunkHdr, 16, { next: 0, order: 8, num_elms: 12 }],
  [kho.KhoBitmapElm, 16, { phys_start: 0, bitmap: 8 }],
  [uapi.CreateSessionArg, 72, { size: 0, fd: 4, name: 8 }],
  [uapi.RetrieveSessionArg, 72, { size: 0, fd: 4, name: 8 }],
  [uapi.PreserveFdArg, 16, { size: 0, fd: 4, token: 8 }],
  [uapi.RetrieveFdArg, 16, { size: 0, fd: 4, token: 8 }],
  [uapi.SessionFinishArg, 8, { size: 0, reserved: 4 }],
  [uapi.SessionGetNameArg, 72, { size: 0, reserved: 4, name: 8 }],
];

for (const [layout, size, offsets] of table) {
  test(`${layout.name}: sizeof ${size} and field offsets`, () => {
    assert.equal(layout.size, size);
    for (const [f, o] of Object.entries(offsets)) assert.equal(layout.offsets[f], o, `${layout.name}.${f}`);
  });
}

test('per-block capacities and limits from the spec', () => {
  assert.equal(luo.blockCapacity(luo.LuoSessionSer.size), 51);
  assert.equal(luo.blockCapacity(luo.LuoFileSer.size), 63);
  assert.equal(luo.LUO_FLB_MAX, 63);
  assert.equal(kho.KHO_MEM_CHUNK_CAPACITY, 255);
  assert.equal(kho.KHO_VMALLOC_CHUNK_ENTRIES, 511);
  assert.equal(kho.KHO_ORDER_0_LOG2, 52);
});

test('the real kernel luo_ser bytes decode with the layout', () => {
  // First 32 bytes of handover-memory/pages/luo_ser@0x3ac000.bin from the real 7.3.4 capture.
  const raw = Buffer.from('6c756f2d76350000' + '0100000000000000' + '00d0833f00000000' + '00d03a0000000000', 'hex');
  const v = luo.LuoSer.decode(raw);
  assert.deepEqual(v, { compatible: 'luo-v5', liveupdate_num: 1n, sessions_pa: 0x3f83d000n, flbs_pa: 0x3ad000n });
  assert.deepEqual(luo.LuoSer.encode(v), new Uint8Array(raw));
});

test('declared sizeof must match the fields', () => {
  assert.throws(() => defineStruct('bad', 'le', { a: u32, b: u64 }, 16), /fields add up to 12 bytes/);
  const withPad = defineStruct('padded', 'le', { a: u32, _p: pad(4), b: u64 }, 16);
  assert.equal(withPad.offsets.b, 8);
  assert.deepEqual(Object.keys(withPad.decode(new Uint8Array(16))), ['a', 'b']);
});

test('encode rejects values that do not fit their field', () => {
  const s = defineStruct('t', 'le', { a: u16, b: u64, c: s32, d: bytes(2) }, 16);
  assert.throws(() => s.encode({ a: 0x10000, b: 0n, c: 0, d: new Uint8Array(0) }), /t\.a/);
  assert.throws(() => s.encode({ a: 0, b: -1n, c: 0, d: new Uint8Array(0) }), /t\.b/);
  assert.throws(() => s.encode({ a: 0, b: 0n, c: 2 ** 31, d: new Uint8Array(0) }), /t\.c/);
  assert.throws(() => s.encode({ a: 0, b: 0n, c: 0, d: new Uint8Array(3) }), /t\.d/);
});

test('decode out of bounds gives a BoundsError with the offset', () => {
  const err = (() => { try { luo.LuoSer.decode(new Uint8Array(40), 16); } catch (e) { return e; } })();
  assert.ok(err instanceof BoundsError);
  assert.equal((err as BoundsError).offset, 16);
  assert.throws(() => new ByteReader(new Uint8Array(3), 'le').u32(), BoundsError);
});

test('C strings: strnlen semantics, truncation to size-1 and NUL padding', () => {
  const b = new Uint8Array(8).fill(0xff);
  assert.equal(writeCString(b, 0, 8, 'abcdefghij'), false);
  assert.deepEqual([...b], [97, 98, 99, 100, 101, 102, 103, 0]);
  writeCString(b, 0, 8, 'ab');
  assert.deepEqual([...b], [97, 98, 0, 0, 0, 0, 0, 0]);
  const full = new Uint8Array(4).fill(0x41);
  assert.equal(readCString(full, 0, 4), 'AAAA');
});

test('round trip: random values through a mixed struct in both byte orders', () => {
  for (const endian of ['le', 'be'] as const) {
    const s = defineStruct('mix', endian, { a: u16, b: u32, c: s32, d: u64, e: cstr(12), f: bytes(3), _z: pad(1) }, 34);
    fc.assert(fc.property(
      fc.record({
        a: fc.integer({ min: 0, max: 0xffff }),
        b: fc.integer({ min: 0, max: 0xffffffff }),
        c: fc.integer({ min: -0x80000000, max: 0x7fffffff }),
        d: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
        e: fc.string({ unit: fc.integer({ min: 1, max: 0x7f }).map((c) => String.fromCharCode(c)), maxLength: 11 }),
        f: fc.uint8Array({ minLength: 3, maxLength: 3 }),
      }),
      (v) => {
        const enc = s.encode(v);
        assert.equal(enc.length, 34);
        assert.deepEqual(s.decode(enc), { ...v });
      },
    ));
  }
});

test('ByteWriter and ByteReader are symmetric', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }))), (pairs) => {
    for (const e of ['le', 'be'] as const) {
      const w = new ByteWriter(e, 1);
      for (const [a, b] of pairs) w.u32(a).u64(b);
      const r = new ByteReader(w.finish(), e);
      for (const [a, b] of pairs) { assert.equal(r.u32(), a); assert.equal(r.u64(), b); }
      assert.equal(r.remaining, 0);
    }
  }));
  const be = new ByteWriter('be').u32(0xd00dfeed).finish();
  assert.deepEqual([...be], [0xd0, 0x0d, 0xfe, 0xed]);
});

test('C strings decode one character per byte, 0x80..0x9f included', () => {
  const b = Uint8Array.of(0x41, 0x80, 0x9f, 0xff, 0);
  assert.equal(readCString(b, 0, 5), 'A\u0080\u009f\u00ff');
});
