/** The memfd model (mm/memfd.c, mm/shmem.c): flags, I/O, sizes, seals, references, errnos as the kernel's. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Machine } from '../../src/kernel/machine.ts';
import { LuoError, isLuoError, type ErrnoName } from '../../src/errno.ts';
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
  MFD_CLOEXEC,
  MFD_EXEC,
  MFD_HUGE_1GB,
  MFD_HUGE_2MB,
  MFD_HUGETLB,
  MFD_NAME_MAX_LEN,
  MFD_NOEXEC_SEAL,
  type MemfdContext,
  SEEK_CUR,
  SEEK_END,
  SEEK_SET,
  memfdAllocFile,
  memfdContextOf,
  memfdCreate,
} from '../../src/handlers/index.ts';

const PG = 4096;
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function ctx(opts: Omit<MemfdContext, 'mem' | 'alloc'> = {}): { m: Machine; c: MemfdContext } {
  const m = new Machine({ ramSize: 1n << 30n });
  return { m, c: memfdContextOf(m.kernel, opts) };
}

function throwsErrno(fn: () => unknown, errno: ErrnoName, what?: string): void {
  assert.throws(fn, (e: unknown) => isLuoError(e, errno), what ?? `expected ${errno}`);
}

test('memfd_create: flags, names and initial seals as mm/memfd.c sets them', () => {
  const { c } = ctx();
  const plain = memfdCreate(c, 'plain', 0);
  assert.equal(plain.kind, 'memfd');
  assert.equal(plain.inode.name, 'memfd:plain');
  assert.equal(plain.getSeals(), F_SEAL_SEAL, 'without MFD_ALLOW_SEALING the file is born sealed');
  assert.equal(plain.stat().mode & 0o777, 0o777, 'MFD_EXEC is the vm.memfd_noexec=0 default');
  throwsErrno(() => plain.addSeals(F_SEAL_GROW), 'EPERM');

  const sealable = memfdCreate(c, 'sealable', MFD_ALLOW_SEALING | MFD_CLOEXEC);
  assert.equal(sealable.getSeals(), 0);
  assert.equal(sealable.cloexec, true);

  const noexec = memfdCreate(c, 'noexec', MFD_NOEXEC_SEAL);
  assert.equal(noexec.getSeals(), F_SEAL_EXEC, 'MFD_NOEXEC_SEAL lifts F_SEAL_SEAL and seals exec');
  assert.equal(noexec.stat().mode & 0o111, 0);

  throwsErrno(() => memfdCreate(c, 'x', 0x100), 'EINVAL', 'unknown flag');
  throwsErrno(() => memfdCreate(c, 'x', MFD_EXEC | MFD_NOEXEC_SEAL), 'EINVAL');
  throwsErrno(() => memfdCreate(c, 'x', MFD_HUGE_2MB), 'EINVAL', 'a huge size without MFD_HUGETLB');
  throwsErrno(() => memfdCreate(c, 'a'.repeat(MFD_NAME_MAX_LEN + 1), 0), 'EINVAL');
  assert.equal(memfdCreate(c, 'a'.repeat(MFD_NAME_MAX_LEN), 0).inode.name.length, 6 + MFD_NAME_MAX_LEN);
  assert.equal(memfdCreate(c, 'cut\0here', 0).inode.name, 'memfd:cut', 'a C string ends at NUL');

  const strict = ctx({ noexecScope: 2 }).c;
  throwsErrno(() => memfdCreate(strict, 'x', 0), 'EINVAL', 'vm.memfd_noexec=2 needs an exec flag');
  assert.equal(memfdCreate(ctx({ noexecScope: 1 }).c, 'x', 0).getSeals(), F_SEAL_EXEC);

  const inner = memfdAllocFile(c, '', MFD_ALLOW_SEALING);
  assert.equal(inner.inode.name, '', 'memfd_alloc_file takes the name as given (LUO passes "")');
  assert.equal(inner.getSeals(), 0);
});

test('read, write, pread, pwrite and lseek follow fs/read_write.c', () => {
  const { c } = ctx();
  const f = memfdCreate(c, 'rw', 0);
  assert.equal(f.write(enc('hello world')), 11);
  assert.equal(f.pos, 11);
  assert.equal(f.read(10).length, 0, 'read at EOF');
  assert.equal(f.lseek(0, SEEK_SET), 0);
  assert.equal(dec(f.read(5)), 'hello');
  assert.equal(f.lseek(1, SEEK_CUR), 6);
  assert.equal(dec(f.read(100)), 'world');
  assert.equal(f.lseek(-5, SEEK_END), 6);
  throwsErrno(() => f.lseek(-1, SEEK_SET), 'EINVAL');
  throwsErrno(() => f.lseek(-12, SEEK_END), 'EINVAL');
  throwsErrno(() => f.lseek(0, 3), 'EINVAL', 'SEEK_DATA is not modelled');
  assert.equal(f.pos, 6, 'a failed lseek leaves the position');
  assert.equal(f.lseek(100, SEEK_SET), 100, 'seeking past EOF is fine');
  assert.equal(f.stat().size, 11);

  // A write past EOF leaves a hole that reads as zeros.
  assert.equal(f.pwrite(enc('Z'), 3 * PG + 7), 1);
  assert.equal(f.stat().size, 3 * PG + 8);
  const all = f.pread(1 << 20, 0);
  assert.equal(all.length, 3 * PG + 8);
  assert.equal(dec(all.subarray(0, 11)), 'hello world');
  assert.ok(all.subarray(11, 3 * PG + 7).every((b) => b === 0));
  assert.equal(all[3 * PG + 7], 0x5a);
  assert.equal(f.pos, 100, 'pwrite and pread leave f_pos alone');
  assert.equal(f.inode.cachedPages, 2, 'only written pages are allocated');
  throwsErrno(() => f.pread(1, -1), 'EINVAL');
  throwsErrno(() => f.pwrite(enc('x'), -1), 'EINVAL');
  assert.equal(f.pwrite(new Uint8Array(0), 1 << 40), 0, 'an empty write checks nothing');
  assert.equal(f.stat().size, 3 * PG + 8);
});

test('a write across many pages and a read back agree byte for byte', () => {
  const { c } = ctx();
  const f = memfdCreate(c, 'big', 0);
  const data = new Uint8Array(5 * PG + 123).map((_, i) => (i * 7 + 3) & 0xff);
  assert.equal(f.pwrite(data, 1000), data.length);
  assert.deepEqual(f.pread(data.length, 1000), data);
  assert.equal(f.inode.cachedPages, 6);
});

test('ftruncate: shrink drops pages and zeroes the tail, grow adds a hole; errnos', () => {
  const { m, c } = ctx();
  const f = memfdCreate(c, 't', 0);
  const before = m.kernel.alloc.stats().allocatedPages;
  f.pwrite(new Uint8Array(3 * PG).fill(0x41), 0);
  assert.equal(m.kernel.alloc.stats().allocatedPages, before + 3);
  f.ftruncate(PG + 10);
  assert.equal(f.inode.cachedPages, 2);
  assert.equal(m.kernel.alloc.stats().allocatedPages, before + 2);
  f.ftruncate(3 * PG);
  const b = f.pread(3 * PG, 0);
  assert.ok(b.subarray(0, PG + 10).every((x) => x === 0x41));
  assert.ok(b.subarray(PG + 10).every((x) => x === 0), 'truncated bytes come back as zeros');
  throwsErrno(() => f.ftruncate(-1), 'EINVAL');
  throwsErrno(() => f.ftruncate(2 ** 60), 'EFBIG');
  f.ftruncate(1 << 30);
  assert.equal(f.stat().size, 1 << 30);
  assert.equal(f.stat().blocks, 2 * 8, 'growing allocates nothing');
});

test('fallocate: allocates !uptodate pages reading as zeros, KEEP_SIZE, PUNCH_HOLE, unsupported modes', () => {
  const { c } = ctx();
  const f = memfdCreate(c, 'fa', 0);
  f.fallocate(PG, 2 * PG);
  assert.equal(f.stat().size, 3 * PG);
  assert.equal(f.inode.cachedPages, 2);
  assert.ok(f.inode.folios().every((x) => !x.uptodate), 'fallocated folios are not uptodate');
  assert.ok(f.pread(3 * PG, 0).every((x) => x === 0));
  f.fallocate(8 * PG, PG, FALLOC_FL_KEEP_SIZE);
  assert.equal(f.stat().size, 3 * PG, 'KEEP_SIZE leaves i_size');
  assert.equal(f.inode.cachedPages, 3);
  f.pwrite(new Uint8Array(3 * PG).fill(0x42), 0);
  f.fallocate(PG - 100, PG + 200, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
  const b = f.pread(3 * PG, 0);
  assert.ok(b.subarray(0, PG - 100).every((x) => x === 0x42));
  assert.ok(b.subarray(PG - 100, 2 * PG + 100).every((x) => x === 0), 'the punched range reads zeros');
  assert.ok(b.subarray(2 * PG + 100).every((x) => x === 0x42));
  assert.equal(f.inode.folioAt(1), undefined, 'the fully covered page left the cache');
  throwsErrno(() => f.fallocate(0, PG, FALLOC_FL_PUNCH_HOLE), 'EOPNOTSUPP');
  throwsErrno(() => f.fallocate(0, PG, 0x10), 'EOPNOTSUPP', 'FALLOC_FL_ZERO_RANGE');
  throwsErrno(() => f.fallocate(-1, PG), 'EINVAL');
  throwsErrno(() => f.fallocate(0, 0), 'EINVAL');
});

test('seals: GROW, SHRINK, WRITE, FUTURE_WRITE, SEAL and EXEC refuse what mm/shmem.c refuses', () => {
  const { c } = ctx();
  const f = memfdCreate(c, 's', MFD_ALLOW_SEALING);
  f.pwrite(new Uint8Array(2 * PG).fill(1), 0);
  f.addSeals(F_SEAL_GROW | F_SEAL_SHRINK);
  throwsErrno(() => f.ftruncate(3 * PG), 'EPERM');
  throwsErrno(() => f.ftruncate(PG), 'EPERM');
  f.ftruncate(2 * PG);
  throwsErrno(() => f.pwrite(enc('x'), 2 * PG), 'EPERM', 'a write at EOF would grow');
  assert.equal(f.pwrite(new Uint8Array(PG + 20).fill(2), PG - 10), PG + 10, 'a write crossing EOF stops at the page that would grow the file');
  assert.equal(f.stat().size, 2 * PG);
  throwsErrno(() => f.fallocate(2 * PG, PG), 'EPERM');
  f.fallocate(0, 2 * PG, 0);

  const w = memfdCreate(c, 'w', MFD_ALLOW_SEALING);
  const map = w.mapShared(true);
  throwsErrno(() => w.addSeals(F_SEAL_WRITE), 'EBUSY', 'a shared writable mapping blocks F_SEAL_WRITE');
  map.unmap();
  w.addSeals(F_SEAL_WRITE);
  throwsErrno(() => w.pwrite(enc('x'), 0), 'EPERM');
  throwsErrno(() => w.mapShared(true), 'EPERM');
  w.mapShared(false).unmap();
  throwsErrno(() => w.fallocate(0, PG, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE), 'EPERM');
  w.ftruncate(PG);
  assert.equal(w.stat().size, PG, 'F_SEAL_WRITE alone still lets the size change');

  const fw = memfdCreate(c, 'fw', MFD_ALLOW_SEALING);
  fw.addSeals(F_SEAL_FUTURE_WRITE);
  throwsErrno(() => fw.write(enc('x')), 'EPERM');

  const ss = memfdCreate(c, 'ss', MFD_ALLOW_SEALING);
  ss.addSeals(F_SEAL_SEAL);
  throwsErrno(() => ss.addSeals(F_SEAL_GROW), 'EPERM');
  throwsErrno(() => memfdCreate(c, 'bad', MFD_ALLOW_SEALING).addSeals(0x40), 'EINVAL');
  throwsErrno(() => memfdCreate(c, 'bad', MFD_ALLOW_SEALING).addSeals(2 ** 32), 'EINVAL');

  const ex = memfdCreate(c, 'ex', MFD_ALLOW_SEALING);
  ex.addSeals(F_SEAL_EXEC);
  assert.equal(ex.getSeals(), F_SEAL_EXEC | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE, 'F_SEAL_EXEC on an executable file implies write seals');
  const nx = memfdCreate(c, 'nx', MFD_NOEXEC_SEAL);
  nx.addSeals(F_SEAL_GROW);
  assert.equal(nx.getSeals(), F_SEAL_EXEC | F_SEAL_GROW);
});

test('references: fds share an open file; the pages go back with the last reference (LUO included)', () => {
  const { m, c } = ctx();
  const base = m.kernel.alloc.stats().allocatedPages;
  const f = memfdCreate(c, 'ref', 0);
  f.pwrite(new Uint8Array(4 * PG).fill(9), 0);
  const dup = f.get();
  assert.equal(dup, f);
  const other = f.reopen();
  assert.equal(other.inode, f.inode);
  other.lseek(7, SEEK_SET);
  assert.equal(f.pos, 0, 'another open file has its own position');
  f.close();
  f.luoRefs = 1;
  f.close();
  assert.equal(f.closed, false, 'LUO still holds the file');
  other.close();
  assert.equal(m.kernel.alloc.stats().allocatedPages, base + 4);
  f.luoRefs = 0;
  assert.equal(f.closed, true);
  assert.equal(f.inode.released, true);
  assert.equal(m.kernel.alloc.stats().allocatedPages, base, 'every page is back');
  throwsErrno(() => f.read(1), 'EBADF');
  throwsErrno(() => f.close(), 'EBADF');
});

test('hugetlb memfds: another kind of file, 2 MiB folios, no write(2), aligned truncates', () => {
  const { m, c } = ctx();
  const h = memfdCreate(c, 'huge', MFD_HUGETLB | MFD_ALLOW_SEALING);
  assert.equal(h.kind, 'hugetlb-memfd');
  throwsErrno(() => h.write(enc('x')), 'EINVAL');
  throwsErrno(() => h.ftruncate(PG), 'EINVAL');
  h.ftruncate(4 << 20);
  h.fallocate(0, 1);
  assert.deepEqual(h.inode.folios().map((f) => [f.index, f.order]), [[0, 9]]);
  assert.equal(h.pread(8, 0).length, 8);
  throwsErrno(() => memfdCreate(c, 'g', MFD_HUGETLB | MFD_HUGE_1GB), 'ENODEV', 'no 1 GiB pool on the simulated machine');
  assert.equal(memfdCreate(c, 'g', MFD_HUGETLB | MFD_HUGE_2MB).kind, 'hugetlb-memfd');
  const base = m.kernel.alloc.stats().allocatedPages;
  h.close();
  assert.equal(m.kernel.alloc.stats().allocatedPages, base - 512);
});

test('shmem_enabled=always puts writes in PMD folios; within_size only below i_size', () => {
  const { c } = ctx({ shmemHuge: 'always' });
  const f = memfdCreate(c, 'thp', 0);
  f.pwrite(enc('x'), 3 << 20);
  assert.deepEqual(f.inode.folios().map((x) => [x.index, x.order]), [[512, 9]]);
  const w = memfdCreate(ctx({ shmemHuge: 'within_size' }).c, 'thp', 0);
  w.pwrite(enc('x'), 0);
  assert.equal(w.inode.folios()[0]!.order, 0, 'a 1-byte file is smaller than a PMD');
  w.ftruncate(4 << 20);
  w.pwrite(enc('y'), 2 << 20);
  assert.equal(w.inode.folioAt(512)!.order, 9);
  assert.equal(dec(w.pread(1, 2 << 20)), 'y');
});

test('fallocate that runs out of memory gives back only what it allocated', () => {
  const { m, c } = ctx();
  let left = Infinity;
  const failing: MemfdContext = {
    ...c,
    alloc: {
      allocFolio: (o) => {
        if (left-- <= 0) throw new LuoError('ENOMEM', 'injected');
        return c.alloc.allocFolio(o);
      },
      freeFolio: (p, o) => c.alloc.freeFolio(p, o),
    },
  };
  const f = memfdCreate(failing, 'oom', 0);
  f.pwrite(enc('keep'), 0);
  f.fallocate(2 * PG, PG);
  const base = m.kernel.alloc.stats().allocatedPages;
  left = 3;
  throwsErrno(() => f.fallocate(0, 10 * PG), 'ENOMEM');
  assert.equal(m.kernel.alloc.stats().allocatedPages, base, 'the 3 pages this call allocated went back');
  assert.equal(f.inode.cachedPages, 2, 'earlier pages stay');
  assert.equal(f.stat().size, 3 * PG);
  assert.equal(dec(f.pread(4, 0)), 'keep');
  left = 1;
  assert.equal(f.pwrite(new Uint8Array(3 * PG).fill(7), 4 * PG), PG, 'a write that runs out of memory is short');
  throwsErrno(() => f.pwrite(enc('x'), 9 * PG), 'ENOMEM');
});

/** A plain byte-array model of a memfd for property tests. */
class Model {
  bytes = new Uint8Array(0);
  pos = 0;
  write(at: number, d: Uint8Array): void {
    if (at + d.length > this.bytes.length) this.resize(at + d.length);
    this.bytes.set(d, at);
  }
  resize(n: number): void {
    const b = new Uint8Array(n);
    b.set(this.bytes.subarray(0, Math.min(n, this.bytes.length)));
    this.bytes = b;
  }
}

const opArb = fc.oneof(
  fc.record({ op: fc.constant('pwrite' as const), at: fc.integer({ min: 0, max: 12 * PG }), len: fc.integer({ min: 1, max: 3 * PG }), seed: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ op: fc.constant('truncate' as const), len: fc.integer({ min: 0, max: 14 * PG }) }),
  fc.record({ op: fc.constant('fallocate' as const), at: fc.integer({ min: 0, max: 12 * PG }), len: fc.integer({ min: 1, max: 3 * PG }), keep: fc.boolean() }),
  fc.record({ op: fc.constant('punch' as const), at: fc.integer({ min: 0, max: 12 * PG }), len: fc.integer({ min: 1, max: 3 * PG }) }),
);

test('property: any sequence of writes, truncates, fallocates and punches reads back like a byte array', () => {
  const { m, c } = ctx();
  fc.assert(fc.property(fc.array(opArb, { maxLength: 25 }), (ops) => {
    const base = m.kernel.alloc.stats().allocatedPages;
    const f = memfdCreate(c, 'prop', 0);
    const model = new Model();
    for (const o of ops) {
      if (o.op === 'pwrite') {
        const d = new Uint8Array(o.len).map((_, i) => (o.seed + i) & 0xff);
        assert.equal(f.pwrite(d, o.at), o.len);
        model.write(o.at, d);
      } else if (o.op === 'truncate') {
        f.ftruncate(o.len);
        model.resize(o.len);
      } else if (o.op === 'fallocate') {
        f.fallocate(o.at, o.len, o.keep ? FALLOC_FL_KEEP_SIZE : 0);
        if (!o.keep && o.at + o.len > model.bytes.length) model.resize(o.at + o.len);
      } else {
        f.fallocate(o.at, o.len, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
        model.bytes.fill(0, Math.min(o.at, model.bytes.length), Math.min(o.at + o.len, model.bytes.length));
      }
      assert.equal(f.stat().size, model.bytes.length);
    }
    assert.deepEqual(f.pread(1 << 20, 0), model.bytes);
    f.close();
    assert.equal(m.kernel.alloc.stats().allocatedPages, base, 'closing gives every page back');
  }), { numRuns: 60 });
});

test('holds: a hole or a folio not yet written holds zeros; a written page holds its bytes (a short last page by its length); a page held is left out of the change log', () => {
  const { m, c } = ctx();
  const f = memfdCreate(c, 'twin', 0);
  f.ftruncate(4 * PG);
  const zeros = new Uint8Array(PG);
  assert.ok(f.inode.holds(0, zeros), 'a hole reads as zeros');
  assert.ok(!f.inode.holds(0, new Uint8Array(PG).fill(1)));
  f.fallocate(PG, PG);
  assert.ok(f.inode.holds(PG, zeros), 'a folio allocated but never written');
  const page = new Uint8Array(PG).map((_, i) => i & 0xff);
  f.pwrite(page, 2 * PG);
  assert.ok(f.inode.holds(2 * PG, page));
  const other = page.slice();
  other[4095] = other[4095]! ^ 1;
  assert.ok(!f.inode.holds(2 * PG, other), 'one byte differs');
  assert.ok(f.inode.holds(2 * PG, page.subarray(0, 100)), 'a short (last) page compares its length');
  // reading to compare changes nothing: a capture that finds the page held writes nothing
  const changed = m.memory.trackChanges();
  assert.ok(f.inode.holds(2 * PG, page));
  assert.deepEqual([...changed], []);
  m.memory.stopTracking();
});
