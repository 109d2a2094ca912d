/** memfd-v2 ABI codecs (include/linux/kho/abi/memfd.h): layouts and round trips. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemfdLuoFolioSer, MemfdLuoSer } from '../../src/abi/luo.ts';
import { type MemfdSer, decodeMemfdFolios, decodeMemfdSer, encodeMemfdFolios, encodeMemfdSer } from '../../src/handlers/index.ts';

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const serArb: fc.Arbitrary<MemfdSer> = fc.record({
  pos: u64, size: u64, seals: fc.nat({ max: 0xffffffff }), flags: fc.nat({ max: 0xffffffff }), nr_folios: u64,
  folios: fc.record({ first: u64, total_pages: fc.nat({ max: 0xffffffff }), flags: fc.nat({ max: 0xffff }), order: fc.nat({ max: 0xffff }) }),
});

test('memfd_luo_ser is 48 packed bytes: pos, size, seals, flags, nr_folios, then struct kho_vmalloc', () => {
  assert.equal(MemfdLuoSer.size, 48);
  assert.deepEqual(MemfdLuoSer.offsets, { pos: 0, size: 8, seals: 16, flags: 20, nr_folios: 24, folios_first: 32, folios_total_pages: 40, folios_flags: 44, folios_order: 46 });
  assert.equal(MemfdLuoFolioSer.size, 16);
  const b = encodeMemfdSer({ pos: 5n, size: 17n, seals: 1, flags: 0, nr_folios: 1n, folios: { first: 0x3de000n, total_pages: 1, flags: 1, order: 0 } });
  assert.equal(Buffer.from(b).toString('hex'), '0500000000000000' + '1100000000000000' + '01000000' + '00000000' + '0100000000000000' + '00e03d0000000000' + '01000000' + '0100' + '0000');
});

test('property: memfd_luo_ser decodes what it encodes', () => {
  fc.assert(fc.property(serArb, fc.nat({ max: 64 }), (s, off) => {
    const buf = new Uint8Array(off + 48);
    encodeMemfdSer(s, buf, off);
    assert.deepEqual(decodeMemfdSer(buf, off), { ...s, folios: { ...s.folios } });
  }));
});

test('property: folio entries keep pfn (52 bits), flags (12 bits) and index', () => {
  const entry = fc.record({ pfn: fc.nat({ max: 2 ** 52 - 1 }), flags: fc.nat({ max: 0xfff }), index: u64 });
  fc.assert(fc.property(fc.array(entry, { maxLength: 40 }), (es) => {
    const b = encodeMemfdFolios(es);
    assert.equal(b.length, es.length * 16);
    assert.deepEqual(decodeMemfdFolios(b, es.length), es.map((e) => ({ ...e })));
  }));
  const one = encodeMemfdFolios([{ pfn: 0x11ce, flags: 3, index: 0n }]);
  assert.equal(Buffer.from(one).toString('hex'), 'ce11000000003000' + '0000000000000000', 'the real kernel\'s entry for "hello kexec world"');
});
