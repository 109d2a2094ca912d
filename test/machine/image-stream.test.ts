/**
 * Images read while they are written (a kexec's successor reading on its own core): the reader
 * waits for the bytes it needs, gets exactly what a whole-file read gets, and fails with EIO when
 * the writer gives up, stops short, or the channel says something else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PhysicalMemory } from '../../src/machine/memory.ts';
import type { ImageStream } from '../../src/machine/image.ts';
import { ChannelStream } from '../../src/daemon/successor.ts';
import { isLuoError } from '../../src/errno.ts';

const MiB = 1n << 20n;
const dir = mkdtempSync(join(tmpdir(), 'luo-image-stream-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** 64 MiB of RAM with 5 MiB of distinct data pages and a zero gap. */
function sample(): { mem: PhysicalMemory; ranges: { start: bigint; end: bigint }[] } {
  const mem = new PhysicalMemory({ size: 64n * MiB });
  const page = new Uint8Array(4096);
  for (let p = 0; p < 1280; p++) {
    page.fill(p % 251);
    page[0] = p & 0xff;
    page[1] = p >> 8;
    mem.write(16n * MiB + BigInt(p) * 4096n, page);
  }
  return { mem, ranges: [{ start: 16n * MiB, end: 24n * MiB }] };
}

/** A stream that records, for every wait, how much was written when it was let through. */
function watched(s: ChannelStream, written: () => number): { stream: ImageStream; waits: Array<{ wanted: number; had: number; complete: boolean }> } {
  const waits: Array<{ wanted: number; had: number; complete: boolean }> = [];
  return {
    waits,
    stream: {
      until: async (bytes) => {
        await s.until(bytes);
        waits.push({ wanted: bytes, had: written(), complete: s.path !== undefined });
      },
      complete: () => s.complete(),
    },
  };
}

test('an image read while it is written: every read waits for its bytes, the memory is the same as from the finished file', async () => {
  const { mem, ranges } = sample();
  const path = join(dir, 'live.img');
  const chan = new ChannelStream();
  let written = 0;
  const { stream, waits } = watched(chan, () => written);
  let reading: Promise<{ memory: PhysicalMemory; meta: unknown }> | undefined;
  await mem.saveImage(path, {
    ranges, meta: { live: true }, durable: false,
    progress: {
      opened: (tmp) => {
        reading = PhysicalMemory.loadImage(tmp, { stream });
      },
      written: (n) => {
        written = n;
        chan.line(`written ${n}`);
      },
    },
  });
  const before = waits.length;
  chan.line(`image ${path}`);
  const got = await reading!;
  assert.deepEqual(got.meta, { live: true });
  assert.ok(before >= 3, `the reader was under way before the writer finished (${before} reads let through)`);
  for (const w of waits) assert.ok(w.complete || w.had >= w.wanted, `a read of ${w.wanted} bytes was let through with ${w.had} written`);
  const whole = (await PhysicalMemory.loadImage(path)).memory;
  for (let p = 4096; p < 4096 + 2048; p++) {
    assert.equal(got.memory.pageState(p), whole.pageState(p), `state of pfn ${p}`);
    assert.deepEqual(got.memory.read(BigInt(p) * 4096n, 4096), whole.read(BigInt(p) * 4096n, 4096), `bytes of pfn ${p}`);
  }
});

test('a streamed image finished and renamed before the reader opens it is read from its final path', async () => {
  const { mem, ranges } = sample();
  const path = join(dir, 'renamed.img');
  const chan = new ChannelStream();
  let tmp = '';
  await mem.saveImage(path, { ranges, durable: false, progress: { opened: (t) => (tmp = t), written: (n) => chan.line(`written ${n}`) } });
  chan.line(`image ${path}`);
  const { memory } = await PhysicalMemory.loadImage(tmp, { stream: chan });
  assert.equal(memory.read(16n * MiB + 4096n * 300n, 1)[0], 300 & 0xff);
});

test('the writer gives up half-way (abort, or its channel closes): the reader fails with EIO', async () => {
  const { mem, ranges } = sample();
  const path = join(dir, 'half.img');
  await mem.saveImage(path, { ranges, durable: false });
  for (const end of ['abort', 'gone']) {
    const chan = new ChannelStream();
    chan.line('written 2097152');
    const reading = PhysicalMemory.loadImage(path, { stream: chan });
    await new Promise((r) => setTimeout(r, 20));
    if (end === 'abort') chan.line('abort');
    else chan.fail('the kexec that started this daemon went away before handing over its image');
    await assert.rejects(reading, (e: unknown) => isLuoError(e, 'EIO') && (end === 'abort' ? /called off/ : /went away/).test((e as Error).message));
  }
});

test('a streamed file that ends short of its header, or a channel that says something else: EIO, never a hang', async () => {
  const { mem, ranges } = sample();
  const path = join(dir, 'short.img');
  await mem.saveImage(path, { ranges, durable: false });
  const short = join(dir, 'short-copy.img');
  copyFileSync(path, short);
  truncateSync(short, 3 << 20);
  const chan = new ChannelStream();
  const reading = PhysicalMemory.loadImage(short, { stream: chan });
  chan.line('written 1048576');
  chan.line(`image ${short}`);
  await assert.rejects(reading, (e: unknown) => isLuoError(e, 'EIO') && /file shrank while reading at offset 3145728/.test((e as Error).message));

  const odd = new ChannelStream();
  const r2 = PhysicalMemory.loadImage(path, { stream: odd });
  odd.line('written 4096');
  odd.line('hello there');
  await assert.rejects(r2, (e: unknown) => isLuoError(e, 'EIO') && /channel said "hello there" while the image was being written/.test((e as Error).message));
  // after the end, further lines change nothing
  odd.line(`image ${path}`);
  await assert.rejects(odd.complete(), (e: unknown) => isLuoError(e, 'EIO'));

  const back = new ChannelStream();
  const r3 = PhysicalMemory.loadImage(path, { stream: back });
  back.line('written 4096');
  back.line('written 12');
  await assert.rejects(r3, (e: unknown) => isLuoError(e, 'EIO') && /said 12 bytes were written after 4096/.test((e as Error).message));
});
