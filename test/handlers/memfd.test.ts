/** The memfd-v2 handler across real kexecs of the simulated machine (mm/memfd_luo.c behaviour). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemfdLuoSer } from '../../src/abi/luo.ts';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  F_SEAL_EXEC,
  F_SEAL_FUTURE_WRITE,
  F_SEAL_GROW,
  F_SEAL_SEAL,
  F_SEAL_SHRINK,
  F_SEAL_WRITE,
  MFD_ALLOW_SEALING,
  MFD_HUGETLB,
  MFD_NOEXEC_SEAL,
  MemfdFile,
  SEEK_SET,
  decodeMemfdFolios,
  decodeMemfdSer,
  memfdCreate,
} from '../../src/handlers/index.ts';
import { PG, boot, dec, enc, newArgs, pattern, preserveAndKexec, retrieve, throwsErrno, viewOf } from './helpers.ts';

test('memfds of every shape come back identical after kexec: bytes, size, position, seals; name ""', () => {
  const { m, c, h } = boot();
  const empty = memfdCreate(c, 'empty', 0);
  const hello = memfdCreate(c, 'hello', 0);
  hello.write(enc('hello kexec world'));
  hello.lseek(5, SEEK_SET);
  const mib = memfdCreate(c, 'mib', MFD_ALLOW_SEALING);
  mib.write(pattern(7, 1 << 20));
  mib.addSeals(F_SEAL_WRITE);
  const holes = memfdCreate(c, 'holes', MFD_ALLOW_SEALING);
  holes.pwrite(new Uint8Array(PG).fill(0x41), 0);
  holes.pwrite(new Uint8Array(PG).fill(0x43), 2 * PG);
  holes.fallocate(3 * PG, PG);
  holes.ftruncate(9 * PG + 17);
  holes.lseek(100, SEEK_SET);
  holes.addSeals(F_SEAL_GROW | F_SEAL_SHRINK);
  const sparse = memfdCreate(c, 'sparse', MFD_ALLOW_SEALING);
  sparse.pwrite(enc('tail'), (1 << 22) - 4);
  sparse.fallocate(0, 8 * PG, FALLOC_FL_KEEP_SIZE);
  sparse.fallocate(PG, PG, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
  sparse.addSeals(F_SEAL_FUTURE_WRITE | F_SEAL_SEAL);
  const files = [empty, hello, mib, holes, sparse];
  const before = files.map(viewOf);

  const next = preserveAndKexec(m, h, files);
  const after = next.data.map((d) => retrieve(next.h, d));
  after.forEach((f, i) => {
    const v = viewOf(f);
    assert.equal(v.size, before[i]!.size, `file ${i} size`);
    assert.equal(v.pos, before[i]!.pos, `file ${i} pos`);
    assert.equal(v.seals, before[i]!.seals, `file ${i} seals`);
    assert.ok(Buffer.from(v.bytes).equals(Buffer.from(before[i]!.bytes)), `file ${i} bytes`);
    assert.equal(f.inode.name, '', 'retrieved memfds are named ""');
    assert.equal(f.kind, 'memfd');
  });
  assert.equal(after[0]!.inode.cachedPages, 0);
  assert.equal(after[3]!.inode.cachedPages, 10, 'holes were filled at preserve time');
  // Seals keep working in the new kernel (the fixture log: ftruncate under F_SEAL_GROW is EPERM).
  throwsErrno(() => after[3]!.ftruncate(100 * PG), 'EPERM');
  assert.equal(after[3]!.pwrite(enc('Z'), 0), 1);
  throwsErrno(() => after[2]!.pwrite(enc('Z'), 0), 'EPERM');
  throwsErrno(() => after[4]!.addSeals(F_SEAL_GROW), 'EPERM');
  // The retrieved files are ordinary memfds: they grow, and give their pages back on close.
  after[1]!.write(enc('!'));
  assert.equal(dec(after[1]!.pread(100, 0)), 'hello!kexec world');
  const allocated = next.k.alloc.stats().allocatedPages;
  const held = after.reduce((n, f) => n + f.inode.cachedPages, 0);
  assert.equal(held, 0 + 1 + 256 + 10 + 1024, 'every page of every file is in a page cache');
  for (const f of after) f.close();
  assert.equal(next.k.alloc.stats().allocatedPages, allocated - held, 'and goes back on close');
});

test('a memfd made with MFD_NOEXEC_SEAL comes back with F_SEAL_EXEC and, as the kernel does it, the write seals it implies', () => {
  const { m, c, h } = boot();
  const nx = memfdCreate(c, 'nx', MFD_NOEXEC_SEAL);
  nx.write(enc('data'));
  assert.equal(nx.getSeals(), F_SEAL_EXEC);
  const next = preserveAndKexec(m, h, [nx]);
  const f = retrieve(next.h, next.data[0]!);
  // memfd_alloc_file("", MFD_ALLOW_SEALING) makes a 0777 inode; memfd_add_seals(F_SEAL_EXEC) on an
  // executable file adds SHRINK|GROW|WRITE|FUTURE_WRITE.
  assert.equal(f.getSeals(), F_SEAL_EXEC | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE);
  assert.equal(dec(f.pread(4, 0)), 'data');
});

test('property: random memfds survive a kexec byte for byte', () => {
  const op = fc.oneof(
    fc.record({ k: fc.constant('w' as const), at: fc.integer({ min: 0, max: 40 * PG }), len: fc.integer({ min: 1, max: 3 * PG }), seed: fc.integer() }),
    fc.record({ k: fc.constant('t' as const), len: fc.integer({ min: 0, max: 48 * PG }) }),
    fc.record({ k: fc.constant('f' as const), at: fc.integer({ min: 0, max: 40 * PG }), len: fc.integer({ min: 1, max: 4 * PG }), keep: fc.boolean() }),
  );
  const file = fc.record({ ops: fc.array(op, { maxLength: 8 }), pos: fc.integer({ min: 0, max: 1 << 24 }), seals: fc.subarray([F_SEAL_SHRINK, F_SEAL_GROW, F_SEAL_WRITE, F_SEAL_FUTURE_WRITE, F_SEAL_SEAL]) });
  fc.assert(fc.property(fc.array(file, { minLength: 1, maxLength: 4 }), fc.constantFrom('never', 'always') as fc.Arbitrary<'never' | 'always'>, (specs, huge) => {
    const { m, c, h } = boot(1n << 30n, { shmemHuge: huge });
    const files = specs.map((s) => {
      const f = memfdCreate(c, 'p', MFD_ALLOW_SEALING);
      for (const o of s.ops) {
        if (o.k === 'w') f.pwrite(pattern(o.seed, o.len), o.at);
        else if (o.k === 't') f.ftruncate(o.len);
        else f.fallocate(o.at, o.len, o.keep ? FALLOC_FL_KEEP_SIZE : 0);
      }
      f.lseek(s.pos, SEEK_SET);
      f.addSeals(s.seals.reduce((a, b) => a | b, 0));
      return f;
    });
    const before = files.map(viewOf);
    const next = preserveAndKexec(m, h, files, { shmemHuge: huge });
    next.data.forEach((d, i) => {
      const v = viewOf(retrieve(next.h, d));
      assert.equal(v.size, before[i]!.size);
      assert.equal(v.pos, before[i]!.pos);
      assert.equal(v.seals, before[i]!.seals);
      assert.ok(Buffer.from(v.bytes).equals(Buffer.from(before[i]!.bytes)));
    });
  }), { numRuns: 25 });
});

test('a 1 GiB memfd, mostly untouched, costs little host memory across preserve and kexec', () => {
  const { m, c, h, k } = boot(4n << 30n);
  const f = memfdCreate(c, 'huge-sparse', 0);
  f.ftruncate(1 << 30);
  const marks = [0, 12345, 100 << 20, (1 << 30) - 4096];
  for (const at of marks) f.pwrite(enc(`mark@${at}`), at);
  const hostBefore = m.memory.stats().hostBytes;
  const blocksBefore = k.kho!.preservedBlocks;
  const next = preserveAndKexec(m, h, [f]);
  assert.ok(m.memory.stats().hostBytes - hostBefore < 16 << 20, `host memory grew by ${m.memory.stats().hostBytes - hostBefore} bytes`);
  const ser = decodeMemfdSer(m.memory.read(next.data[0]!, MemfdLuoSer.size));
  assert.equal(ser.nr_folios, 262144n, 'every page of the file was pinned and listed');
  assert.equal(ser.folios.total_pages, 1024, '262144 16-byte entries fill 1024 pages');
  const unrestored = next.k.kho!.unrestoredBlocks;
  assert.ok(unrestored >= 262144 + 1024 + 1 + blocksBefore - 10);
  const g = retrieve(next.h, next.data[0]!);
  assert.equal(g.stat().size, 1 << 30);
  for (const at of marks) assert.equal(dec(g.pread(`mark@${at}`.length, at)), `mark@${at}`);
  assert.ok(g.pread(PG, 1 << 29).every((b) => b === 0));
  const chunks = Math.floor(1024 / 511) + 1; // 511 run addresses per chunk page
  assert.equal(next.k.kho!.unrestoredBlocks, unrestored - 262144 - 1024 - chunks - 1, 'folios, array pages, chunks and the descriptor were all restored');
  assert.ok(m.memory.stats().hostBytes - hostBefore < 16 << 20);
});

test('with shmem_enabled=always a 1 GiB memfd goes over as 512 PMD folios', () => {
  const { m, c, h } = boot(4n << 30n, { shmemHuge: 'always' });
  const f = memfdCreate(c, 'thp', 0);
  f.ftruncate(1 << 30);
  f.pwrite(enc('head'), 0);
  f.pwrite(enc('tail'), (1 << 30) - 4);
  const k = m.kernel;
  const base = k.kho!.preservedByOrder().get(9) ?? 0;
  const next = preserveAndKexec(m, h, [f], { shmemHuge: 'always' });
  assert.equal(k.kho!.preservedByOrder().get(9), base + 512);
  const ser = decodeMemfdSer(m.memory.read(next.data[0]!, MemfdLuoSer.size));
  assert.equal(ser.nr_folios, 512n);
  const g = retrieve(next.h, next.data[0]!);
  assert.equal(g.inode.folios().length, 512);
  assert.ok(g.inode.folios().every((x, i) => x.order === 9 && x.index === i * 512));
  assert.equal(dec(g.pread(4, 0)), 'head');
  assert.equal(dec(g.pread(4, (1 << 30) - 4)), 'tail');
  assert.ok(m.memory.stats().hostBytes < 16 << 20);
});

test('preserved_ops: inside writes work, growing writes, truncates and fallocates are EPERM; unpreserve restores it all', () => {
  const { c, h, k } = boot();
  const f = memfdCreate(c, 'preserved', 0);
  const data = pattern(3, 1 << 20);
  f.write(data);
  const pagesBefore = k.kho!.preservedPages;
  const allocBefore = k.alloc.stats().allocatedPages;
  const a = newArgs(h, f);
  h.ops.preserve(a);
  assert.equal(f.inode.frozen, true);
  assert.equal(k.kho!.preservedPages, pagesBefore + 256 + 1 + 1 + 1, 'folios, the array page, its chunk, the descriptor');

  f.lseek(0, SEEK_SET);
  const inside = new Uint8Array(128).fill(0x41);
  assert.equal(f.write(inside), 128);
  assert.deepEqual(f.pread(128, 0), inside);
  f.lseek((1 << 20) - 1, SEEK_SET);
  // generic_perform_write goes a page at a time: the last byte fits, the next page would grow the
  // file. The selftest's write loop sees a short write, then EPERM.
  assert.equal(f.write(inside), 1, 'a short write up to the end');
  throwsErrno(() => f.write(inside.subarray(1)), 'EPERM', 'a write crossing the end');
  assert.equal(f.lseek(0, 2), 1 << 20);
  throwsErrno(() => f.ftruncate(1 << 19), 'EPERM', 'shrinking');
  throwsErrno(() => f.ftruncate(2 << 20), 'EPERM', 'growing');
  f.ftruncate(1 << 20);
  throwsErrno(() => f.fallocate(0, PG), 'EPERM', 'any fallocate');
  throwsErrno(() => f.fallocate(0, PG, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE), 'EPERM', 'punching a hole');
  assert.equal(f.pwrite(new Uint8Array(PG + 10), (1 << 20) - PG - 5), PG + 5, 'a write from inside stops at the end');
  assert.equal(f.stat().size, 1 << 20);
  const sealable = memfdCreate(c, 'pinned', MFD_ALLOW_SEALING);
  sealable.write(enc('x'));
  const b = newArgs(h, sealable);
  h.ops.preserve(b);
  throwsErrno(() => sealable.addSeals(F_SEAL_WRITE), 'EBUSY', 'pinned folios block F_SEAL_WRITE');
  sealable.addSeals(F_SEAL_GROW);
  h.ops.unpreserve(b);

  h.ops.unpreserve(a);
  h.ops.unpreserve(a); // a second unpreserve only warns
  assert.equal(f.inode.frozen, false);
  assert.equal(k.kho!.preservedPages, pagesBefore);
  assert.equal(k.alloc.stats().allocatedPages, allocBefore + 1, 'only the other memfd\'s page remains');
  f.ftruncate(2 << 20);
  f.pwrite(enc('grown'), (2 << 20) - 5);
  f.ftruncate(PG);
  f.fallocate(0, 4 * PG);
  assert.equal(f.stat().size, 4 * PG);
  assert.ok(f.inode.folios().every((x) => x.pins === 0));
});

test('freeze captures the position as it is at reboot', () => {
  const { m, c, h } = boot();
  const f = memfdCreate(c, 'pos', 0);
  f.write(enc('hello kexec world'));
  const a = newArgs(h, f);
  h.ops.preserve(a);
  assert.equal(decodeMemfdSer(m.memory.read(a.serializedData, 48)).pos, 17n);
  f.lseek(5, SEEK_SET);
  h.ops.freeze!(a);
  assert.equal(decodeMemfdSer(m.memory.read(a.serializedData, 48)).pos, 5n);
  throwsErrno(() => h.ops.freeze!(newArgs(h, f)), 'EINVAL');
});

test('finish without retrieve gives every preserved page back; after a retrieve it does nothing', () => {
  const { m, c, h } = boot();
  const a = memfdCreate(c, 'a', 0);
  a.write(pattern(1, 5 * PG + 3));
  const b = memfdCreate(c, 'b', 0);
  b.write(enc('kept'));
  const e = memfdCreate(c, 'empty', 0);
  const next = preserveAndKexec(m, h, [a, b, e]);
  const kho = next.k.kho!;
  const alloc = next.k.alloc;
  const blocks = kho.unrestoredBlocks;
  const free = alloc.freePagesCount();

  const fa = newArgs(next.h, undefined, next.data[0]!);
  assert.equal(next.h.ops.canFinish!(fa), true);
  next.h.ops.finish(fa);
  assert.equal(kho.unrestoredBlocks, blocks - 6 - 1 - 1 - 1, '6 folios, the array page, its chunk, the descriptor');
  assert.equal(alloc.freePagesCount(), free + 9, 'and their pages are free');

  const fe = newArgs(next.h, undefined, next.data[2]!);
  next.h.ops.finish(fe);
  assert.equal(kho.unrestoredBlocks, blocks - 10, 'an empty memfd has only its descriptor');

  const g = retrieve(next.h, next.data[1]!);
  const fb = newArgs(next.h, undefined, next.data[1]!);
  fb.retrieveStatus = 1;
  const unrestored = kho.unrestoredBlocks;
  next.h.ops.finish(fb);
  assert.equal(kho.unrestoredBlocks, unrestored);
  assert.equal(dec(g.pread(4, 0)), 'kept');
  fb.retrieveStatus = -22;
  next.h.ops.finish(fb);
  assert.equal(kho.unrestoredBlocks, unrestored);
});

test('canPreserve takes shmem memfds only; getId is the inode', () => {
  const { c, h } = boot();
  const f = memfdCreate(c, 'f', 0);
  assert.equal(h.ops.canPreserve(h, f), true);
  assert.equal(h.ops.canPreserve(h, memfdCreate(c, 'huge', MFD_HUGETLB)), false, 'hugetlb memfds are not shmem');
  assert.equal(h.ops.canPreserve(h, { kind: 'pipe', pos: 0 }), false);
  assert.equal(h.ops.getId!(f), h.ops.getId!(f.reopen()), 'another open file of the same inode has the same id');
  assert.equal(h.ops.getId!(f), h.ops.getId!(f.get()));
  assert.notEqual(h.ops.getId!(f), h.ops.getId!(memfdCreate(c, 'g', 0)));
  assert.equal(h.compatible, 'memfd-v2');
});

test('seals memfd-v2 cannot carry are EOPNOTSUPP; more than UINT_MAX pages is EFBIG; nothing is left behind', () => {
  const { c, h, k } = boot();
  const pages = k.kho!.preservedPages;
  const allocated = k.alloc.stats().allocatedPages;
  const f = memfdCreate(c, 'future', MFD_ALLOW_SEALING);
  f.write(enc('x'));
  f.inode.seals |= 0x40; // a seal a newer kernel might define
  throwsErrno(() => h.ops.preserve(newArgs(h, f)), 'EOPNOTSUPP');
  assert.equal(f.inode.frozen, false);
  f.inode.seals &= ~0x40;
  const big = memfdCreate(c, 'big', 0);
  big.ftruncate(2 ** 44 + 1);
  throwsErrno(() => h.ops.preserve(newArgs(h, big)), 'EFBIG');
  assert.equal(big.inode.frozen, false);
  big.ftruncate(0);
  assert.equal(k.kho!.preservedPages, pages);
  assert.equal(k.alloc.stats().allocatedPages, allocated + 1);
});

test('a hugetlb memfd never reaches the handler (LUO answers PRESERVE_FD with ENOENT)', () => {
  const { c, h } = boot();
  const hf = memfdCreate(c, 'h', MFD_HUGETLB);
  assert.equal(hf.kind, 'hugetlb-memfd');
  assert.ok(hf instanceof MemfdFile);
  assert.equal(h.ops.canPreserve(h, hf), false);
});

test('the folio array lists every folio in index order with DIRTY|UPTODATE, holes and fallocated pages included', () => {
  const { m, c, h } = boot();
  const f = memfdCreate(c, 'order', 0);
  f.pwrite(enc('A'), 0);
  f.fallocate(3 * PG, PG);
  f.ftruncate(6 * PG);
  const a = newArgs(h, f);
  h.ops.preserve(a);
  const ser = decodeMemfdSer(m.memory.read(a.serializedData, 48));
  const chunk = m.memory.read(ser.folios.first, PG);
  const arrayPa = new DataView(chunk.buffer).getBigUint64(8, true);
  const entries = decodeMemfdFolios(m.memory.read(arrayPa, PG), Number(ser.nr_folios));
  assert.deepEqual(entries.map((e) => [e.index, e.flags]), [0, 1, 2, 3, 4, 5].map((i) => [BigInt(i), 3]));
  assert.deepEqual(entries.map((e) => e.pfn), f.inode.folios().map((x) => x.pfn));
  assert.ok(f.inode.folios().every((x) => x.uptodate && x.pins === 1));
});
