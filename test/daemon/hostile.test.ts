/**
 * Hostile and stalled clients beside working ones, against a `luo serve` child process: a half
 * frame that never completes, a flood of requests whose replies are never read, garbage bytes,
 * a FIFO named as a preserve source, a file position no file can have. Every hostile client gets
 * its precise error (or is left waiting on itself); the working clients finish all their work and
 * the daemon's memory stays bounded.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { LuoClient } from '../../src/client/index.ts';
import { openRegular } from '../../src/daemon/mirror.ts';
import { encodeFrame, MSG, PayloadWriter } from '../../src/daemon/wire.ts';
import { cleanup, type DaemonProc, errnoOf, startDaemon, tempDir } from './helpers.ts';

let dir: string;
let d: DaemonProc;

before(async () => {
  dir = tempDir('hostile');
  d = await startDaemon(dir);
});
after(async () => {
  d.child.kill('SIGKILL');
  await cleanup(dir);
});

const rssKiB = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

function raw(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path, () => resolve(s));
    s.once('error', reject);
  });
}

const hello = (seq: number) => encodeFrame(MSG.HELLO, seq, new PayloadWriter().u32(1).i32(process.pid).u32(0).u32(0).finish());


test('openRegular refuses a FIFO without opening it (an open would wait for a writer)', () => {
  const fifo = join(dir, 'fifo-unit');
  execFileSync('mkfifo', [fifo]);
  assert.equal(openRegular(fifo), undefined);
  assert.throws(() => openRegular(join(dir, 'missing')), /ENOENT/);
});

test('stalled, flooding and garbage clients never stop the working ones', async () => {
  const pid = d.child.pid!;
  // a half frame that never completes
  const stalled = await raw(d.socket);
  stalled.write(hello(1).subarray(0, 9));
  // garbage: an impossible frame length gets an error and a closed connection
  const garbage = await raw(d.socket);
  const garbageClosed = new Promise<Buffer>((resolve) => {
    let got = Buffer.alloc(0);
    garbage.on('data', (b: Buffer) => (got = Buffer.concat([got, b])));
    garbage.on('close', () => resolve(got));
  });
  garbage.write(Buffer.alloc(64, 0xff));
  // a flood of STATUS requests whose replies are never read
  const flood = await raw(d.socket);
  flood.pause();
  const status = encodeFrame(MSG.STATUS, 2, new Uint8Array(0));
  flood.write(hello(1));
  const rss0 = rssKiB(pid);
  let sent = 0;
  const pump = (): void => {
    while (sent < 200_000) {
      sent++;
      if (!flood.write(status)) return void flood.once('drain', pump);
    }
  };
  pump();

  // the working clients: each creates sessions, preserves buffers, closes, 40 times
  const fifo = join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const work = async (i: number): Promise<void> => {
    const c = await LuoClient.connect(d.socket);
    try {
      for (let n = 0; n < 40; n++) {
        const dev = await c.openDevice().catch(() => undefined);
        if (!dev) continue; // another worker has the device (EBUSY): as on the kernel
        const s = await dev.createSession(`w${i}-${n}`);
        await s.preserveBuffer(`data ${i} ${n}`, 1);
        // a FIFO as the source: refused as a file no handler takes, at once
        assert.equal(await errnoOf(s.preserveFile(fifo, 2)), 'ENOENT');
        // no file offset is 2^64 - 1 (nor anything at or above 2^63)
        for (const pos of [(1n << 64n) - 1n, 1n << 63n]) {
          assert.equal(await errnoOf(s.ioctl(0xba40, new Uint8Array([16, 0, 0, 0, 255, 255, 255, 255, 3, 0, 0, 0, 0, 0, 0, 0]), { source: { kind: 'buffer', data: new Uint8Array(1), pos } })), 'EINVAL');
        }
        await s.close();
        await dev.close();
      }
    } finally {
      await c.close();
    }
  };
  await Promise.all([0, 1, 2, 3].map(work));
  const status0 = await (await LuoClient.connect(d.socket)).status();
  assert.ok(status0, 'the daemon still answers');

  // the garbage client was told and closed; the stalled one is still connected and harmless
  const g = await garbageClosed;
  assert.equal(g.readUInt32LE(4), 0xffffffff, 'an ERROR frame');
  assert.equal(stalled.destroyed, false);
  // the flooding client: the daemon stopped reading from it instead of buffering replies
  const grew = rssKiB(pid) - rss0;
  assert.ok(grew < 200 * 1024, `daemon RSS grew by ${grew} KiB while ${sent} requests were flooded`);
  assert.ok(sent < 200_000, `the flood was held back (${sent} requests written)`);
  stalled.destroy();
  flood.destroy();
  garbage.destroy();
});
