/**
 * The successor's end of a kexec's channel (daemon/successor.ts) over a real socket pair: it says
 * what it was offered, hands out the parent's orders in turn (a base, then the image), and a
 * parent that says something it did not offer, aborts mid-stream or goes away is never taken for
 * an order to boot.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KexecChannel, type KexecOffers } from '../../src/daemon/successor.ts';

const dir = mkdtempSync(join(tmpdir(), 'luo-channel-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

/** A connected pair: the parent's socket and the successor's channel; the first line the parent reads. */
async function pair(offers: KexecOffers): Promise<{ parent: Socket; ch: KexecChannel; lines: () => Promise<string> }> {
  const path = join(dir, `s${n++}`);
  const server = createServer();
  await new Promise<void>((r) => server.listen(path, r));
  const accepted = new Promise<Socket>((r) => server.once('connection', r));
  const child = connect(path);
  const parent = await accepted;
  server.close();
  let text = '';
  parent.on('data', (b: Buffer) => (text += b.toString()));
  const ch = KexecChannel.attach(child, offers, async () => undefined);
  const lines = async (): Promise<string> => {
    while (!text.includes('\n')) await new Promise((r) => setTimeout(r, 5));
    const i = text.indexOf('\n');
    const l = text.slice(0, i);
    text = text.slice(i + 1);
    return l;
  };
  return { parent, ch, lines };
}

test('it says what it was offered', async () => {
  for (const [offers, said] of [
    [{ stream: false, precopy: false }, 'loaded'],
    [{ stream: true, precopy: false }, 'loaded stream'],
    [{ stream: true, precopy: true }, 'loaded stream precopy'],
  ] as const) {
    const { parent, lines } = await pair(offers);
    assert.equal(await lines(), said);
    parent.destroy();
  }
});

test('a base, then a streamed image: each order in turn, the lines between going to its stream', async () => {
  const { parent, ch, lines } = await pair({ stream: true, precopy: true });
  await lines();
  parent.write('base /s/luo.base.1.1.img.tmp\nwritten 4096\nwritten 8192\n');
  const b = await ch.next();
  assert.equal(b.kind, 'base');
  if (b.kind !== 'base') return;
  assert.equal(b.tmpPath, '/s/luo.base.1.1.img.tmp');
  await b.stream.until(8192);
  parent.write('image /s/luo.base.1.1.img\n');
  assert.equal(await b.stream.complete(), '/s/luo.base.1.1.img');
  ch.answer('based');
  assert.equal(await lines(), 'based');
  parent.write('stream /s/luo.img.tmp\nwritten 100\nimage /s/luo.img\n');
  const o = await ch.next();
  assert.equal(o.kind, 'stream');
  if (o.kind === 'stream') assert.equal(await o.stream.complete(), '/s/luo.img');
  parent.destroy();
});

test('abort while the base streams: the stream fails and the next order is abort', async () => {
  const { parent, ch, lines } = await pair({ stream: true, precopy: true });
  await lines();
  parent.write('base /s/b.tmp\nwritten 10\nabort\n');
  const b = await ch.next();
  assert.equal(b.kind, 'base');
  if (b.kind === 'base') await assert.rejects(b.stream.complete(), /called off/);
  assert.equal((await ch.next()).kind, 'abort');
  parent.destroy();
});

test('orders not offered, unknown lines, a parent that goes away: never an order to boot', async () => {
  {
    const { parent, ch, lines } = await pair({ stream: true, precopy: false });
    await lines();
    parent.write('base /s/b.tmp\n');
    const o = await ch.next();
    assert.equal(o.kind, 'gone');
    if (o.kind === 'gone') assert.match(o.why, /said "base \/s\/b.tmp"/);
    parent.destroy();
  }
  {
    const { parent, ch, lines } = await pair({ stream: false, precopy: false });
    await lines();
    parent.write('stream /s/x.tmp\n');
    assert.equal((await ch.next()).kind, 'gone', 'streaming was not offered');
    parent.destroy();
  }
  {
    const { parent, ch, lines } = await pair({ stream: true, precopy: true });
    await lines();
    parent.write('base /s/b.tmp\nwritten 5\n');
    const b = await ch.next();
    parent.destroy();
    if (b.kind === 'base') await assert.rejects(b.stream.complete(), /went away/);
    const o = await ch.next();
    assert.equal(o.kind, 'gone');
    assert.equal((await ch.next()).kind, 'gone', 'and stays gone');
  }
  {
    const { parent, ch, lines } = await pair({ stream: true, precopy: true });
    await lines();
    parent.write('x'.repeat(9000));
    const o = await ch.next();
    assert.equal(o.kind, 'gone');
    if (o.kind === 'gone') assert.match(o.why, /longer than 8 KiB/);
    parent.destroy();
  }
});
