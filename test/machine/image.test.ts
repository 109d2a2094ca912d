/** Memory images: round trips, compactness, atomic replacement, and every kind of damaged file. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, statSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PhysicalMemory, isPoisoned } from '../../src/machine/memory.ts';
import { IMAGE_HEADER_SIZE } from '../../src/machine/image.ts';
import { isLuoError } from '../../src/errno.ts';
import { createHash } from 'node:crypto';
import { crc32 } from 'node:zlib';

const MiB = 1n << 20n;
const GiB = 1n << 30n;
const TiB = 1n << 40n;
const dir = mkdtempSync(join(tmpdir(), 'luo-image-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** 16 MiB: data pages, zero pages, poisoned pages inside and outside the saved ranges. */
function sample(): { mem: PhysicalMemory; ranges: { start: bigint; end: bigint }[] } {
  const mem = new PhysicalMemory({ size: 16n * MiB });
  for (let p = 0; p < 600; p++) mem.write(BigInt(p) * 4096n + 7n, Uint8Array.of(p & 0xff, 1, 2, 3));
  mem.writeU64(15n * MiB, 0xfeedfacecafebeefn);
  mem.poisonExcept([
    { start: 0n, end: 4n * MiB },
    { start: 15n * MiB, end: 16n * MiB },
  ]);
  mem.write(5n * MiB + 100n, Uint8Array.of(9, 9)); // a write into a poisoned page: poison around it
  const ranges = [
    { start: 0n, end: 2n * MiB + 1n }, // rounded out to a page
    { start: 2n * MiB + 8192n, end: 6n * MiB }, // runs into poisoned memory
    { start: 15n * MiB, end: 16n * MiB },
  ];
  return { mem, ranges };
}

function assertSameInRanges(a: PhysicalMemory, b: PhysicalMemory, ranges: { start: bigint; end: bigint }[]): void {
  const pages = a.pageSpans(ranges, 'test');
  for (const s of pages) {
    for (let p = s.start; p < s.end; p++) {
      assert.equal(b.pageState(p), a.pageState(p), `state of pfn ${p}`);
      assert.deepEqual(b.read(BigInt(p) * 4096n, 4096), a.read(BigInt(p) * 4096n, 4096), `bytes of pfn ${p}`);
    }
  }
}

test('round trip: saved ranges come back byte for byte, everything else is poison', async () => {
  const { mem, ranges } = sample();
  const path = join(dir, 'rt.img');
  const meta = { cmdline: 'console=ttyS0 kho=on', fdt: '0x1000', nested: [1, 2, { x: null }] };
  await mem.saveImage(path, { ranges, meta });
  assert.ok(!existsSync(`${path}.tmp`));
  const { memory, meta: got } = await PhysicalMemory.loadImage(path, { expectSize: 16n * MiB });
  assert.deepEqual(got, meta);
  assert.equal(memory.size, mem.size);
  assertSameInRanges(mem, memory, ranges);
  assert.equal(memory.pageState(512 + 1), 'poison', 'the page between two saved ranges');
  assert.ok(isPoisoned(memory.read(8n * MiB, 4096), 8n * MiB));
  assert.equal(memory.readU64(15n * MiB), 0xfeedfacecafebeefn);
  let dataPages = 0;
  for (const sp of mem.pageSpans(ranges, 'test')) for (const r of mem.runs(sp.start, sp.end)) if (r.state === 'data') dataPages += r.count;
  assert.equal(memory.stats().touchedPages, dataPages, 'only DATA pages take host memory after loading');
  assert.ok(isPoisoned(memory.read(5n * MiB, 100), 5n * MiB));
});

test('a kexec image (not durable: no fsync) is the same file, and pages loaded as views stay independent', async () => {
  const { mem, ranges } = sample();
  const a = join(dir, 'durable.img');
  const b = join(dir, 'kexec.img');
  await mem.saveImage(a, { ranges, meta: { n: 1 } });
  await mem.saveImage(b, { ranges, meta: { n: 1 }, durable: false });
  assert.ok(readFileSync(a).equals(readFileSync(b)), 'byte-identical files');
  const { memory } = await PhysicalMemory.loadImage(b);
  // pages share the loader's read chunks: writing one page changes neither its neighbours nor the file
  const before = memory.read(4096n, 4096);
  memory.write(0n, new Uint8Array(4096).fill(0xee));
  assert.deepEqual(memory.read(4096n, 4096), before);
  assert.equal(memory.read(0n, 1)[0], 0xee);
  assertSameInRanges(mem, (await PhysicalMemory.loadImage(b)).memory, ranges);
});

test('a 1 TiB machine with 512 GiB of kept zero pages saves compactly and streams > 1 MiB of data', async () => {
  const mem = new PhysicalMemory({ size: TiB });
  const data = new Uint8Array(4096);
  for (let p = 0; p < 700; p++) {
    data.fill(p & 0xff);
    mem.write(BigInt(p) * 2n * MiB, data);
  }
  const ranges = [{ start: 0n, end: 512n * GiB }];
  const path = join(dir, 'big.img');
  await mem.saveImage(path, { ranges, meta: null });
  const size = statSync(path).size;
  assert.ok(size < 700 * 4096 + 700 * 2 * 24 + 4096, `file is ${size} bytes`);
  const { memory } = await PhysicalMemory.loadImage(path);
  for (const p of [0, 1, 350, 699]) assert.equal(memory.read(BigInt(p) * 2n * MiB, 1)[0], p & 0xff);
  assert.equal(memory.pageState(1), 'zero');
  assert.equal(memory.pageState(Number((512n * GiB) / 4096n)), 'poison');
  assert.equal(memory.stats().touchedPages, 700);
});

test('damaged files: truncated at many offsets, each a clear LuoError', async () => {
  const { mem, ranges } = sample();
  const path = join(dir, 'src.img');
  await mem.saveImage(path, { ranges, meta: { a: 1 } });
  const good = readFileSync(path);
  const cut = join(dir, 'cut.img');
  const offsets = new Set([0, 1, 7, 8, 12, 40, IMAGE_HEADER_SIZE - 1, IMAGE_HEADER_SIZE, IMAGE_HEADER_SIZE + 9, good.length - 33, good.length - 32, good.length - 1]);
  for (let i = 0; i < 40; i++) offsets.add(Math.floor((good.length * i) / 40));
  for (const n of offsets) {
    writeFileSync(cut, good.subarray(0, n));
    await assert.rejects(PhysicalMemory.loadImage(cut), (e: unknown) => {
      assert.ok(isLuoError(e, 'EIO'), `cut at ${n}: ${String(e)}`);
      assert.match((e as Error).message, /truncated/);
      assert.match((e as Error).message, /offset|bytes/);
      return true;
    });
  }
});

test('version 2 is sealed by CRC-32 (8-byte trailer), version 1 by sha256 (32); both load; a damaged page fails the seal', async () => {
  const { mem, ranges } = sample();
  for (const [version, trailer, name] of [[2, 8, 'crc32'], [1, 32, 'sha256']] as const) {
    const path = join(dir, `seal-v${version}.img`);
    await mem.saveImage(path, { ranges, meta: { v: version }, version });
    const bytes = readFileSync(path);
    assert.equal(bytes.readUInt32LE(8), version);
    assert.equal(Number(bytes.readBigUInt64LE(48)), bytes.length, 'the header states the length');
    if (version === 2) {
      assert.equal(bytes.readUInt32LE(bytes.length - 8), crc32(bytes.subarray(0, bytes.length - 8)), 'zlib CRC-32 of everything before it');
      assert.equal(bytes.readUInt32LE(bytes.length - 4), 0);
    } else {
      assert.deepEqual(bytes.subarray(bytes.length - 32), createHash('sha256').update(bytes.subarray(0, bytes.length - 32)).digest());
    }
    const { meta } = await PhysicalMemory.loadImage(path);
    assert.deepEqual(meta, { v: version });
    // one bit of a data page (inside the last DATA run, before the trailer): only the seal sees it
    const bad = Buffer.from(bytes);
    bad[bytes.length - trailer - 100]! ^= 4;
    writeFileSync(path, bad);
    await assert.rejects(PhysicalMemory.loadImage(path), (e: unknown) => isLuoError(e, 'EIO') && new RegExp(`checksum mismatch: ${name} at offset ${bytes.length - trailer}`).test((e as Error).message));
  }
});

test('damaged files: bit flips anywhere are caught (structure or checksum)', async () => {
  const { mem, ranges } = sample();
  const path = join(dir, 'flip-src.img');
  await mem.saveImage(path, { ranges, meta: { a: 1 } });
  const good = readFileSync(path);
  const bad = join(dir, 'flip.img');
  const offsets = [0, 3, 9, 13, 17, 25, 29, 33, 41, 49, 57, 64, 70, 90, 200, 500, 4096, 70000, good.length - 40, good.length - 1];
  for (let i = 0; i < 30; i++) offsets.push(Math.floor((good.length * (i + 0.5)) / 30));
  for (const off of offsets) {
    const b = Buffer.from(good);
    b[off]! ^= 1 << off % 8;
    writeFileSync(bad, b);
    await assert.rejects(PhysicalMemory.loadImage(bad), (e: unknown) => {
      assert.ok(isLuoError(e, 'EIO') || isLuoError(e, 'EINVAL'), `flip at ${off}: ${String(e)}`);
      assert.match((e as Error).message, /offset \d+/, `flip at ${off}: ${(e as Error).message}`);
      return true;
    });
  }
});

test('foreign files, other versions and size mismatches are EINVAL', async () => {
  const { mem, ranges } = sample();
  const path = join(dir, 'v.img');
  await mem.saveImage(path, { ranges });
  const good = readFileSync(path);
  const other = join(dir, 'other.img');
  writeFileSync(other, '#!/bin/sh\necho not an image\n');
  await assert.rejects(PhysicalMemory.loadImage(other), (e: unknown) => isLuoError(e, 'EINVAL') && /not a luo memory image/.test((e as Error).message));
  writeFileSync(other, 'LUO');
  await assert.rejects(PhysicalMemory.loadImage(other), (e: unknown) => isLuoError(e, 'EIO') && /truncated/.test((e as Error).message));
  const v4 = Buffer.from(good);
  v4.writeUInt32LE(4, 8);
  writeFileSync(other, v4);
  await assert.rejects(PhysicalMemory.loadImage(other), (e: unknown) => isLuoError(e, 'EINVAL') && /version 4 at offset 8 \(this build reads 1, 2, 3\)/.test((e as Error).message));
  const pg = Buffer.from(good);
  pg.writeUInt32LE(65536, 12);
  writeFileSync(other, pg);
  await assert.rejects(PhysicalMemory.loadImage(other), (e: unknown) => isLuoError(e, 'EINVAL') && /page size 65536/.test((e as Error).message));
  await assert.rejects(
    PhysicalMemory.loadImage(path, { expectSize: 32n * MiB }),
    (e: unknown) => isLuoError(e, 'EINVAL') && /RAM size mismatch/.test((e as Error).message),
  );
  writeFileSync(other, Buffer.concat([good, Buffer.from([0])]));
  await assert.rejects(PhysicalMemory.loadImage(other), (e: unknown) => isLuoError(e, 'EIO') && /unexpected byte/.test((e as Error).message));
  await assert.rejects(PhysicalMemory.loadImage(join(dir, 'missing.img')), (e: unknown) => isLuoError(e, 'ENOENT'));
});

test('an interrupted save leaves the old image intact; the next save replaces the stale tmp file', async () => {
  const { mem, ranges } = sample();
  const path = join(dir, 'atomic.img');
  await mem.saveImage(path, { ranges, meta: { gen: 1 } });
  const before = readFileSync(path);
  // A crash between writing path.tmp and the rename: a half-written tmp file is left behind.
  writeFileSync(`${path}.tmp`, before.subarray(0, 5000));
  const { meta } = await PhysicalMemory.loadImage(path);
  assert.deepEqual(meta, { gen: 1 });
  assert.deepEqual(readFileSync(path), before);
  mem.writeU64(0n, 42n);
  await mem.saveImage(path, { ranges, meta: { gen: 2 } });
  assert.ok(!existsSync(`${path}.tmp`));
  const again = await PhysicalMemory.loadImage(path);
  assert.deepEqual(again.meta, { gen: 2 });
  assert.equal(again.memory.readU64(0n), 42n);
  // A failed save (range outside RAM) throws before touching anything.
  await assert.rejects(mem.saveImage(path, { ranges: [{ start: 0n, end: 17n * MiB }] }), (e: unknown) => isLuoError(e, 'EFAULT'));
  assert.deepEqual((await PhysicalMemory.loadImage(path)).meta, { gen: 2 });
  // Saving into a directory that does not exist is EIO and leaves nothing behind.
  await assert.rejects(mem.saveImage(join(dir, 'nope', 'x.img'), { ranges }), (e: unknown) => isLuoError(e, 'EIO'));
});
