/**
 * Version 3 images over a base (a kexec's pre-copy): the base holds the pages as they were, the
 * image only the pages changed since; memory loads byte for byte from both, with the base given
 * loaded or found beside the image; a missing, replaced or chained base, a damaged base block and a
 * BASE run the base cannot serve are each a clear error. Also the change log a pre-copy relies on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { PhysicalMemory } from '../../src/machine/memory.ts';
import { IMAGE_HEADER_SIZE } from '../../src/machine/image.ts';
import { IntervalSet } from '../../src/machine/ranges.ts';
import { isLuoError } from '../../src/errno.ts';

const MiB = 1n << 20n;
const dir = mkdtempSync(join(tmpdir(), 'luo-image-base-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

const pa = (pfn: number): bigint => BigInt(pfn) * 4096n;
const page = (tag: number): Uint8Array => new Uint8Array(4096).map((_, i) => (tag * 31 + i) & 0xff);
const RANGES = [{ start: 0n, end: 4n * MiB }];

/** A memory with 300 written pages, its base image, then changes made after the base was written. */
async function scenario(name: string): Promise<{ mem: PhysicalMemory; basePath: string; imgPath: string; base: Awaited<ReturnType<PhysicalMemory['saveImage']>>; changed: ReadonlySet<number> }> {
  const mem = new PhysicalMemory({ size: 8n * MiB });
  for (let p = 0; p < 300; p++) mem.write(pa(p), page(p));
  const basePath = join(dir, `${name}.base.img`);
  const changed = mem.trackChanges();
  const base = await mem.saveImage(basePath, { ranges: RANGES, meta: { role: 'base' } });
  mem.write(pa(10) + 5n, Uint8Array.of(1, 2, 3)); // a write into a base page
  mem.page(20)[0] = 0xee; // a live view handed out after the base: counts as changed
  mem.zero(pa(30), 4096 * 5); // pages 30..34 cleared (their storage stays)
  mem.setRunState(40, 2, 'zero'); // pages 40, 41 dropped
  mem.write(pa(500), page(500)); // a page the base never had
  const imgPath = join(dir, `${name}.img`);
  return { mem, basePath, imgPath, base, changed };
}

function assertSame(a: PhysicalMemory, b: PhysicalMemory): void {
  for (let p = 0; p < 1024; p++) {
    assert.equal(b.pageState(p), a.pageState(p), `state of pfn ${p}`);
    assert.deepEqual(b.read(pa(p), 4096), a.read(pa(p), 4096), `bytes of pfn ${p}`);
  }
}

/** The base's pages minus those changed since (what a kexec names instead of writing). */
function unchanged(s: Awaited<ReturnType<typeof scenario>>): IntervalSet {
  const pages = s.base.dataPages.clone();
  pages.subtract(IntervalSet.from([...s.changed].map((p) => ({ start: p, end: p + 1 }))));
  return pages;
}

async function writeOver(s: Awaited<ReturnType<typeof scenario>>, baseName: string, pages?: IntervalSet): Promise<Awaited<ReturnType<PhysicalMemory['saveImage']>>> {
  return s.mem.saveImage(s.imgPath, {
    ranges: RANGES, meta: { role: 'final' },
    base: { name: baseName, length: s.base.length, seal: s.base.seal, pages: pages ?? unchanged(s) },
  });
}

test('the change log: writes, fills, live views, new and dropped storage count; reads do not', () => {
  const mem = new PhysicalMemory({ size: 8n * MiB });
  for (let p = 0; p < 10; p++) mem.write(pa(p), page(p));
  const changed = mem.trackChanges();
  mem.read(pa(0), 8192);
  mem.storedPage(2);
  mem.pageState(3);
  assert.deepEqual([...changed], [], 'reads change nothing');
  mem.write(pa(1) + 9n, Uint8Array.of(1));
  mem.page(2);
  mem.fill(pa(3), 4096, 7);
  mem.zero(pa(4), 4096);
  mem.setRunState(5, 1, 'poison');
  mem.setPageData(6, page(60));
  mem.write(pa(100), page(100));
  mem.poisonExcept([{ start: 0n, end: pa(7) }, { start: pa(100), end: pa(101) }]); // drops 7, 8, 9
  assert.deepEqual([...changed].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6, 7, 8, 9, 100]);
  mem.stopTracking();
  mem.write(pa(0), Uint8Array.of(1));
  assert.ok(!changed.has(0), 'nothing is recorded after stopTracking');
});

test('an image over a base carries only changed pages and loads byte for byte, the base found beside it', async () => {
  const s = await scenario('beside');
  const w = await writeOver(s, 'beside.base.img');
  assert.equal(w.basePages, 300 - 1 - 1 - 5 - 2, 'every base page but the changed and dropped ones');
  assert.deepEqual([...w.dataPages].map((x) => [x.start, x.end]), [[10, 11], [20, 21], [30, 35], [500, 501]], 'only changed pages are DATA');
  assert.equal(readFileSync(s.imgPath).readUInt32LE(8), 3, 'version 3');
  const got = await PhysicalMemory.loadImage(s.imgPath);
  assert.deepEqual(got.meta, { role: 'final' });
  assert.equal(got.base, 'beside.base.img');
  assert.equal(got.length, w.length);
  assertSame(s.mem, got.memory);
  // the image alone is small: the base holds the rest
  assert.ok(readFileSync(s.imgPath).length < 9 * 4096, `image of ${readFileSync(s.imgPath).length} bytes`);
});

test('a base already loaded is used as it is (the file is not read again); another one is not', async () => {
  const s = await scenario('loaded');
  await writeOver(s, 'loaded.base.img');
  const b = await PhysicalMemory.loadImage(s.basePath);
  unlinkSync(s.basePath);
  const got = await PhysicalMemory.loadImage(s.imgPath, { base: { memory: b.memory, name: 'loaded.base.img', length: b.length, seal: b.seal } });
  assertSame(s.mem, got.memory);
  // a loaded base that is not the one named: the file beside is looked for (and is gone)
  await assert.rejects(
    PhysicalMemory.loadImage(s.imgPath, { base: { memory: b.memory, name: 'loaded.base.img', length: b.length, seal: Uint8Array.of(1, 2, 3, 4, 0, 0, 0, 0) } }),
    (e: unknown) => isLuoError(e, 'ENOENT') && /its base image loaded\.base\.img \(written by the same kexec, kept beside it\) cannot be used/.test((e as Error).message),
  );
});

test('a missing, replaced or chained base is refused with the reason', async () => {
  const s = await scenario('bad');
  await writeOver(s, 'bad.base.img');
  const saved = readFileSync(s.basePath);
  unlinkSync(s.basePath);
  await assert.rejects(PhysicalMemory.loadImage(s.imgPath), (e: unknown) => isLuoError(e, 'ENOENT') && /bad\.base\.img/.test((e as Error).message));
  // another image under the base's name: refused by its seal
  const other = new PhysicalMemory({ size: 8n * MiB });
  other.write(pa(0), page(9));
  await other.saveImage(s.basePath, { ranges: RANGES });
  await assert.rejects(PhysicalMemory.loadImage(s.imgPath), (e: unknown) => isLuoError(e, 'EIO') && /is not the one it was written over/.test((e as Error).message));
  // the same bytes damaged: its own seal fails
  const dmg = Buffer.from(saved);
  dmg[IMAGE_HEADER_SIZE + 4096 * 3]! ^= 1;
  writeFileSync(s.basePath, dmg);
  await assert.rejects(PhysicalMemory.loadImage(s.imgPath), (e: unknown) => isLuoError(e, 'EIO') && /bad\.base\.img .*checksum mismatch/.test((e as Error).message));
  // a base that names a base itself
  writeFileSync(s.basePath, saved);
  copyFileSync(s.imgPath, join(dir, 'chain.img'));
  const t = await scenario('chain2');
  await t.mem.saveImage(t.imgPath, { ranges: RANGES, base: { name: 'chain.img', length: readFileSync(join(dir, 'chain.img')).length, seal: readFileSync(join(dir, 'chain.img')).subarray(-8), pages: IntervalSet.from([{ start: 0, end: 1024 }]) } });
  await assert.rejects(PhysicalMemory.loadImage(t.imgPath), (e: unknown) => isLuoError(e, 'EIO') && /chain\.img .*names a base itself/.test((e as Error).message));
});

test('a BASE run the base cannot serve, a damaged base block, a BASE run without a base: EIO at their offsets', async () => {
  const s = await scenario('runs');
  // the writer is told the base holds pfn 500 (it does not)
  const lie = unchanged(s);
  lie.add(500, 501);
  await writeOver(s, 'runs.base.img', lie);
  await assert.rejects(PhysicalMemory.loadImage(s.imgPath), (e: unknown) => isLuoError(e, 'EIO') && /corrupt run \d+ at offset \d+: pfn 500 is not a DATA page of its base image/.test((e as Error).message));

  await writeOver(s, 'runs.base.img');
  const good = readFileSync(s.imgPath);
  const metaPadded = Math.ceil(good.readUInt32LE(24) / 8) * 8;
  const blockAt = IMAGE_HEADER_SIZE + metaPadded;
  const reseal = (b: Buffer): Buffer => {
    b.writeUInt32LE(crc32(b.subarray(0, b.length - 8)), b.length - 8);
    return b;
  };
  const bad = join(dir, 'runs-bad.img');
  const cases: Array<[string, (b: Buffer) => void, RegExp]> = [
    ['a name with a slash', (b) => b.write('/', blockAt + 24), /corrupt base block at offset \d+: base block: base name/],
    ['reserved field', (b) => b.writeUInt32LE(1, blockAt + 20), /corrupt base block at offset \d+: bad lengths or reserved fields/],
    ['name length', (b) => b.writeUInt32LE(200, blockAt + 16), /corrupt base block at offset \d+: bad lengths/],
    ['block length', (b) => b.writeBigUInt64LE(7n, 56), /corrupt header: base block length 7 at offset 56/],
  ];
  for (const [what, damage, re] of cases) {
    const b = Buffer.from(good);
    damage(b);
    writeFileSync(bad, reseal(b));
    await assert.rejects(PhysicalMemory.loadImage(bad), (e: unknown) => isLuoError(e, 'EIO') && re.test((e as Error).message), what);
  }
  // a version 2 image whose run says BASE (state 3)
  const v2 = new PhysicalMemory({ size: 8n * MiB });
  v2.write(pa(0), page(1));
  const v2Path = join(dir, 'v2.img');
  await v2.saveImage(v2Path, { ranges: RANGES });
  const b = readFileSync(v2Path);
  const runsAt = IMAGE_HEADER_SIZE + Math.ceil(b.readUInt32LE(24) / 8) * 8 + 16;
  b.writeUInt32LE(3, runsAt);
  writeFileSync(bad, reseal(b));
  await assert.rejects(PhysicalMemory.loadImage(bad), (e: unknown) => isLuoError(e, 'EIO') && /corrupt run 0 at offset \d+: state 3/.test((e as Error).message));
});

test('the writer refuses a base it cannot name, and a version other than 3 over a base', async () => {
  const s = await scenario('names');
  for (const name of ['', 'a/b', '..', 'x'.repeat(256)]) {
    await assert.rejects(writeOver(s, name), (e: unknown) => isLuoError(e, 'EINVAL') && /base name/.test((e as Error).message), JSON.stringify(name));
  }
  await assert.rejects(
    s.mem.saveImage(s.imgPath, { ranges: RANGES, version: 2, base: { name: 'n', length: 1, seal: new Uint8Array(8), pages: new IntervalSet() } }),
    (e: unknown) => isLuoError(e, 'EINVAL') && /version 3, not 2/.test((e as Error).message),
  );
});
