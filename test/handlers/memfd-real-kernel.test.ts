/**
 * memfd-v2 against what a real Linux 7.3.4 handed over (test/fixtures/real-kernel/handover-memory):
 * decoding its memfd_luo_ser pages, vmalloc chunks and folio arrays, retrieving its memfds in a
 * simulated kernel booted on those pages, and producing byte-identical structures ourselves.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KhoBlockHeader, LuoFileSer, MemfdLuoSer } from '../../src/abi/luo.ts';
import { KhoScratch } from '../../src/abi/kho.ts';
import { DEFAULT_BUILD, Kernel } from '../../src/kernel/kernel.ts';
import { Machine } from '../../src/kernel/machine.ts';
import { readVmallocChunk } from '../../src/kho/vmalloc.ts';
import {
  F_SEAL_GROW,
  F_SEAL_SEAL,
  F_SEAL_SHRINK,
  MFD_ALLOW_SEALING,
  type MemfdFile,
  type MemfdFolioSer,
  type MemfdSer,
  SEEK_SET,
  decodeMemfdFolios,
  decodeMemfdSer,
  memfdCreate,
  memfdHandlerOf,
} from '../../src/handlers/index.ts';
import { loadRealPages } from '../helpers/fake-machine.ts';
import { PG, boot, dec, enc, newArgs, retrieve } from './helpers.ts';

const real = new Map(loadRealPages().map((p) => [p.pa, p]));
const page = (pa: bigint): Uint8Array => {
  const p = real.get(pa);
  assert.ok(p, `the fixture has the page at 0x${pa.toString(16)}`);
  return p.bytes;
};

/** A memfd as the real kernel described it, followed through its pointers. */
interface RealMemfd {
  token: bigint;
  serPa: bigint;
  ser: MemfdSer;
  chunkPa: bigint;
  arrayPa: bigint;
  entries: MemfdFolioSer[];
  bytes: Uint8Array;
}

/** Every memfd in the real file blocks: token, descriptor, chunk, array and rebuilt contents. */
function realMemfds(): RealMemfd[] {
  const out: RealMemfd[] = [];
  for (const p of real.values()) {
    if (!p.role.startsWith('file-block.')) continue;
    const hdr = KhoBlockHeader.decode(p.bytes);
    for (let i = 0; i < Number(hdr.count); i++) {
      const f = LuoFileSer.decode(p.bytes, KhoBlockHeader.size + i * LuoFileSer.size);
      assert.equal(f.compatible, 'memfd-v2');
      const ser = decodeMemfdSer(page(f.data));
      const nr = Number(ser.nr_folios);
      let chunkPa = 0n;
      let arrayPa = 0n;
      let entries: MemfdFolioSer[] = [];
      if (nr > 0) {
        chunkPa = ser.folios.first;
        const chunk = readVmallocChunk(page(chunkPa));
        assert.equal(chunk.next, 0n);
        assert.equal(chunk.runs.length, ser.folios.total_pages);
        arrayPa = chunk.runs[0]!;
        entries = decodeMemfdFolios(page(arrayPa), nr);
      }
      const size = Number(ser.size);
      const bytes = new Uint8Array(size);
      for (const e of entries) {
        const at = Number(e.index) * PG;
        bytes.set(page(BigInt(e.pfn) << 12n).subarray(0, Math.min(PG, size - at)), at);
      }
      out.push({ token: f.token, serPa: f.data, ser, chunkPa, arrayPa, entries, bytes });
    }
  }
  return out.sort((a, b) => Number(a.token - b.token));
}

const HELLO = 'hello kexec world';

test('the real memfd_luo_ser pages, vmalloc chunks and folio arrays decode into the memfds luoprobe made', () => {
  const got = realMemfds();
  assert.deepEqual(got.map((m) => m.token), [0x1an, 0x2bn, 0x3cn, 0x4dn]);
  const [hello, pages, empty, early] = got as [RealMemfd, RealMemfd, RealMemfd, RealMemfd];

  assert.deepEqual([hello.ser.pos, hello.ser.size, hello.ser.seals, hello.ser.flags, hello.ser.nr_folios], [5n, 17n, F_SEAL_SEAL, 0, 1n]);
  assert.deepEqual(hello.ser.folios, { first: 0x3de000n, total_pages: 1, flags: 1, order: 0 });
  assert.equal(dec(hello.bytes), HELLO);

  assert.deepEqual([pages.ser.pos, pages.ser.size, pages.ser.seals, pages.ser.nr_folios], [100n, 16384n, F_SEAL_GROW | F_SEAL_SHRINK, 4n]);
  assert.deepEqual(pages.entries.map((e) => [e.index, e.flags]), [[0n, 3], [1n, 3], [2n, 3], [3n, 3]], 'the hole and the fallocated page too are DIRTY|UPTODATE');
  assert.deepEqual(pages.entries.map((e) => e.pfn), [0x11cc, 0x3f828, 0x11cd, 0x11c8]);
  const expect = new Uint8Array(4 * PG);
  expect.fill(0x41, 0, PG);
  expect.fill(0x43, 2 * PG, 3 * PG);
  assert.ok(Buffer.from(pages.bytes).equals(Buffer.from(expect)), "'A' page, hole, 'C' page, fallocated page");

  assert.deepEqual(empty.ser, { pos: 0n, size: 0n, seals: F_SEAL_SEAL, flags: 0, nr_folios: 0n, folios: { first: 0n, total_pages: 0, flags: 0, order: 0 } });
  assert.ok(page(empty.serPa).subarray(MemfdLuoSer.size).every((b) => b === 0));

  assert.deepEqual([early.ser.pos, early.ser.size, early.ser.seals], [12n, 12n, F_SEAL_SEAL]);
  assert.equal(dec(early.bytes), 'finish-early');
});

/**
 * Boots a simulated kernel on the real kernel's hand-over: the captured pages at their physical
 * addresses, everything else poisoned, the scratch areas from debugfs passed as a kexec would.
 */
function bootOnRealHandover(): Kernel {
  const m = new Machine({ ramSize: 1n << 30n });
  const scratch = [[0x39800000n, 0x4800000n], [0x3f400000n, 0n], [0x2c000000n, 0xd800000n]] as const; // debugfs s1-boot/out/scratch_{phys,len}
  const segAddr = 0x3dff0000n;
  const seg = new Uint8Array(scratch.length * KhoScratch.size);
  scratch.forEach(([addr, size], i) => KhoScratch.encode({ addr, size }, seg, i * KhoScratch.size));
  for (const p of real.values()) m.memory.setPageData(Number(p.pa >> 12n), p.bytes);
  m.memory.write(segAddr, seg);
  m.memory.poisonExcept([...[...real.keys()].map((pa) => ({ start: pa, end: pa + BigInt(PG) })), { start: segAddr, end: segAddr + BigInt(seg.length) }]);
  const k = Kernel.boot(m, DEFAULT_BUILD, {
    cmdline: 'console=ttyS0 kho=on liveupdate=on',
    kho: { fdtAddr: 0x1f0000n, fdtSize: BigInt(PG), scratchAddr: segAddr, scratchSize: BigInt(seg.length) },
    image: { addr: 0x2c000000n, size: BigInt(DEFAULT_BUILD.imageSize) },
  });
  m.kernel = k;
  assert.ok(k.handover && k.kho?.isKhoBoot(), 'the hand-over was accepted');
  return k;
}

test('retrieve in a kernel booted on the real hand-over rebuilds the real memfds; finish discards the one never retrieved', () => {
  const k = bootOnRealHandover();
  const h = memfdHandlerOf(k);
  const kho = k.kho!;
  const blocks = kho.unrestoredBlocks;
  const want = realMemfds();
  const files = want.slice(0, 3).map((m) => retrieve(h, m.serPa));
  files.forEach((f, i) => {
    const w = want[i]!;
    assert.equal(f.stat().size, Number(w.ser.size));
    assert.equal(f.pos, Number(w.ser.pos));
    assert.equal(f.getSeals(), w.ser.seals);
    assert.equal(f.inode.name, '');
    assert.ok(Buffer.from(f.pread(1 << 20, 0)).equals(Buffer.from(w.bytes)));
    assert.deepEqual(f.inode.folios().map((x) => x.pfn), w.entries.map((e) => e.pfn), 'the very same folios went into the page cache');
  });
  assert.equal(kho.unrestoredBlocks, blocks - 4 - 7 - 1, 'descriptors, chunks, arrays and folios were restored');
  // As stage 2 did: ftruncate under F_SEAL_GROW is EPERM, a 1-byte pwrite works.
  assert.throws(() => files[1]!.ftruncate(100 * PG), /EPERM/);
  assert.equal(files[1]!.pwrite(enc('Z'), 0), 1);

  const free = k.alloc.freePagesCount();
  const early = want[3]!;
  h.ops.finish(newArgs(h, undefined, early.serPa));
  assert.equal(kho.unrestoredBlocks, blocks - 12 - 4, 'finish-early: descriptor, chunk, array and folio given back');
  assert.equal(k.alloc.freePagesCount(), free + 4);
  for (const f of files) f.close();
});

/** Builds in luo what luoprobe built in the real kernel, preserves it, returns the args. */
function preserveLikeLuoprobe(): { m: Machine; items: Array<{ token: bigint; file: MemfdFile; pa: bigint }> } {
  const { m, c, h } = boot();
  const mk = (name: string, flags: number, fill: (f: MemfdFile) => void): MemfdFile => {
    const f = memfdCreate(c, name, flags);
    fill(f);
    return f;
  };
  const early = mk('conf-early', 0, (f) => f.write(enc('finish-early')));
  const hello = mk('conf-hello', 0, (f) => f.write(enc(HELLO)));
  const pages = mk('conf-pages', MFD_ALLOW_SEALING, (f) => {
    f.pwrite(new Uint8Array(PG).fill(0x41), 0);
    f.pwrite(new Uint8Array(PG).fill(0x43), 2 * PG);
    f.fallocate(3 * PG, PG);
    f.lseek(100, SEEK_SET);
    f.addSeals(F_SEAL_GROW | F_SEAL_SHRINK);
  });
  const empty = mk('conf-empty', 0, () => {});
  const out = [[0x4dn, early], [0x1an, hello], [0x2bn, pages], [0x3cn, empty]] as const;
  const args = out.map(([token, file]) => {
    const a = newArgs(h, file);
    h.ops.preserve(a);
    return { token, file, a };
  });
  hello.lseek(5, SEEK_SET); // after PRESERVE_FD, caught by freeze
  for (const { a } of args) h.ops.freeze!(a);
  return { m, items: args.map(({ token, file, a }) => ({ token, file, pa: a.serializedData })) };
}

test('luo preserves the same memfds into byte-identical memfd_luo_ser, chunk and folio-array pages (addresses remapped)', () => {
  const { m, items: mine } = preserveLikeLuoprobe();
  const read = (pa: bigint): Uint8Array => m.memory.read(pa, PG);
  for (const want of realMemfds()) {
    const got = mine.find((x) => x.token === want.token)!;
    const serPage = read(got.pa);
    const ser = decodeMemfdSer(serPage);
    // Physical addresses differ from run to run: remap ours to the real ones, then compare pages.
    const remapped = serPage.slice();
    if (want.ser.nr_folios > 0n) new DataView(remapped.buffer).setBigUint64(MemfdLuoSer.offsets.folios_first, want.ser.folios.first, true);
    assert.ok(Buffer.from(remapped).equals(Buffer.from(page(want.serPa))), `token 0x${want.token.toString(16)}: memfd_luo_ser page`);
    if (want.ser.nr_folios === 0n) {
      assert.equal(ser.folios.first, 0n, 'an empty memfd has no array at all');
      continue;
    }
    const chunk = read(ser.folios.first);
    const myArrayPa = readVmallocChunk(chunk).runs[0]!;
    new DataView(chunk.buffer).setBigUint64(8, want.arrayPa, true);
    assert.ok(Buffer.from(chunk).equals(Buffer.from(page(want.chunkPa))), `token 0x${want.token.toString(16)}: kho_vmalloc chunk page`);
    const array = read(myArrayPa);
    const mineEntries = decodeMemfdFolios(array, Number(ser.nr_folios));
    const dv = new DataView(array.buffer);
    mineEntries.forEach((e, i) => {
      const realPfn = want.entries[i]!.pfn;
      dv.setBigUint64(i * 16, (dv.getBigUint64(i * 16, true) & ~((1n << 52n) - 1n)) | BigInt(realPfn), true);
      assert.ok(Buffer.from(read(BigInt(e.pfn) << 12n)).equals(Buffer.from(page(BigInt(realPfn) << 12n))), `token 0x${want.token.toString(16)}: folio ${i} data page`);
    });
    assert.ok(Buffer.from(array).equals(Buffer.from(page(want.arrayPa))), `token 0x${want.token.toString(16)}: memfd_luo_folio_ser array page`);
  }
});
