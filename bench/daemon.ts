/**
 * The daemon's live-update blackout (`npm run bench -- daemon`): `luo serve` processes (the compiled
 * build) kexec into each other through `luo kexec`, each new daemon started ahead of the freeze; the
 * blackout is from the freeze to the new daemon's readiness, as `luo kexec --json` reports it, with
 * its phases (freeze and serialize, image written, take-over: the new daemon loads and checks the
 * image, boots and listens). Median of 7 kexecs, for a small state and for 4 sessions x 12 MiB.
 *
 * Floors measured in the same run: for the small state, the least a process hand-over costs in Node
 * (a process started ahead is told "go" on a socket pair, listens on a unix socket, renames it into
 * place and says "ready"); for the large state, `dd` writing the whole hand-over's bytes with fsync
 * and reading them back. The large state runs twice: with the pre-copy (the pages go ahead of the
 * freeze, the blackout writes what changed since) and without (LUO_IMAGE_PRECOPY=0: all in the blackout),
 * then both ways again with the bytes in real files luo reads at the freeze (a VMM's memfds).
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Readable, Writable } from 'node:stream';
import { LuoClient } from '../src/client/index.ts';
import { median } from './stats.ts';

const BIN = fileURLToPath(new URL('../bin/luo.mjs', import.meta.url));
const RUNS = 7;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function serve(dir: string, env: NodeJS.ProcessEnv): Promise<void> {
  const child = spawn(process.execPath, [BIN, 'serve', '--socket', join(dir, 's.sock'), '--state-dir', join(dir, 'state'), '--log', join(dir, 'log'), '--ram', '1G'], { stdio: 'ignore', detached: true, env: { ...process.env, ...env } });
  child.unref();
  for (;;) {
    try {
      await (await LuoClient.connect(join(dir, 's.sock'))).close();
      return;
    } catch {
      await sleep(50);
    }
  }
}

interface Phases {
  blackoutMs: number;
  freezeMs: number;
  imageMs: number;
  takeoverMs: number;
  /** Bytes written in the blackout. */
  imageBytes: number;
  /** The whole hand-over (the image as it rests once made whole). */
  handoverBytes: number;
  carriedPages: number;
}

/**
 * RUNS kexecs of a daemon holding `sessions` sessions of `bytes` each; the median of each phase.
 * `files`: each session preserves a real file (luo reads it at the freeze, as it reads a VMM's
 * memfds) instead of bytes handed to the daemon.
 */
async function kexecs(sessions: number, bytes: number, env: NodeJS.ProcessEnv = {}, files = false): Promise<Phases> {
  const dir = mkdtempSync(join(tmpdir(), 'luo-bench-daemon-'));
  const sock = join(dir, 's.sock');
  const preserve = async (s: { preserveBuffer(b: Uint8Array, t: number): Promise<unknown>; preserveFile(p: string, t: number): Promise<unknown> }, i: number, content: Uint8Array): Promise<void> => {
    if (!files) return void (await s.preserveBuffer(content, 1));
    const path = join(dir, `ram-${i}`);
    writeFileSync(path, content);
    await s.preserveFile(path, 1);
  };
  try {
    await serve(dir, env);
    const c = await LuoClient.connect(sock);
    const dev = await c.openDevice();
    for (let i = 0; i < sessions; i++) await preserve(await dev.createSession(`vm-${i}`), i, randomBytes(bytes));
    await dev.close();
    await c.close();
    const runs: Phases[] = [];
    for (let i = 0; i < RUNS; i++) {
      const k = await LuoClient.connectRetry(sock);
      const st = (await k.kexec()).stats as Record<string, number>;
      await k.close().catch(() => undefined);
      runs.push({
        blackoutMs: st['blackoutMs']!, freezeMs: st['freezeMs']!, imageMs: st['imageMs']!, takeoverMs: st['takeoverMs']!, imageBytes: st['imageBytes']!,
        handoverBytes: st['handoverBytes'] ?? st['imageBytes']!, carriedPages: st['carriedPages'] ?? 0,
      });
      // the next kernel re-preserves what it received: the same state goes through every kexec
      const n = await LuoClient.connectRetry(sock);
      const d = await n.openDevice();
      for (let s = 0; s < sessions; s++) {
        const inc = await d.retrieveSession(`vm-${s}`);
        const f = await inc.retrieve(1);
        await inc.finish();
        await inc.close();
        await preserve(await d.createSession(`vm-${s}`), s, f.content);
      }
      await d.close();
      await n.close();
    }
    const k = await LuoClient.connectRetry(sock);
    const { pid } = await k.status();
    await k.shutdown();
    // the daemon logs its last line after answering: wait for it to exit before removing its directory
    for (;;) {
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      await sleep(20);
    }
    const med = (k: keyof Phases): number => median(runs.map((r) => r[k]));
    return {
      blackoutMs: med('blackoutMs'), freezeMs: med('freezeMs'), imageMs: med('imageMs'), takeoverMs: med('takeoverMs'),
      imageBytes: med('imageBytes'), handoverBytes: med('handoverBytes'), carriedPages: med('carriedPages'),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The least a process hand-over costs in Node: go -> listen on a unix socket, rename, ready. */
async function handoverFloorMs(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'luo-bench-floor-'));
  const script = `
    const net = require('node:net'); const fs = require('node:fs');
    const ch = new net.Socket({ fd: 3, readable: true, writable: true });
    ch.write('loaded\\n');
    ch.once('data', () => {
      const tmp = ${JSON.stringify(join(dir, 'f.sock'))} + '.' + process.pid;
      const srv = net.createServer(() => undefined);
      srv.listen(tmp, () => { fs.renameSync(tmp, ${JSON.stringify(join(dir, 'f.sock'))}); ch.end('ready\\n'); setTimeout(() => process.exit(0), 50); });
    });`;
  const times: number[] = [];
  try {
    for (let i = 0; i < RUNS; i++) {
      const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'ignore', 'inherit', 'pipe'] });
      const ch = child.stdio[3] as Readable & Writable;
      await new Promise<void>((r) => ch.once('data', () => r()));
      const t = performance.now();
      ch.write('go\n');
      await new Promise<void>((r) => ch.once('data', () => r()));
      times.push(performance.now() - t);
      await new Promise((r) => child.once('exit', r));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return median(times);
}

/** `dd` writing `bytes` with fsync and reading them back (page cache), median of RUNS. */
function ddFloorMs(bytes: number): number {
  const dir = mkdtempSync(join(tmpdir(), 'luo-bench-dd-'));
  try {
    const src = join(dir, 'src');
    writeFileSync(src, randomBytes(bytes));
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const t = performance.now();
      spawnSync('dd', [`if=${src}`, `of=${join(dir, 'dst')}`, 'bs=1M', 'conv=fsync'], { stdio: 'ignore' });
      spawnSync('dd', [`if=${join(dir, 'dst')}`, 'of=/dev/null', 'bs=1M'], { stdio: 'ignore' });
      times.push(performance.now() - t);
    }
    return median(times);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function runDaemonBench(): Promise<void> {
  const floor = await handoverFloorMs();
  const small = await kexecs(1, 4096);
  const line = (what: string, p: Phases, floorMs: number, floorName: string): void => {
    const mib = (b: number): string => (b / 2 ** 20).toFixed(1);
    const written = p.carriedPages ? `; hand-over ${mib(p.handoverBytes)} MiB, ${p.carriedPages} pages pre-copied, ${mib(p.imageBytes)} MiB written in the blackout` : `; image ${mib(p.imageBytes)} MiB`;
    console.log(`daemon: ${what.padEnd(34)} blackout ${p.blackoutMs.toFixed(1).padStart(7)} ms (freeze ${p.freezeMs.toFixed(1)}, image ${p.imageMs.toFixed(1)}, take-over ${p.takeoverMs.toFixed(1)}${written})   ${floorName} ${floorMs.toFixed(1)} ms   ratio ${(p.blackoutMs / floorMs).toFixed(2)}x`);
  };
  line('small state (1 session, 4 KiB)', small, floor, 'process hand-over floor');
  // 48 MiB in all (a single protocol frame carries at most 16 MiB, so 4 x 12 MiB rather than 3 x 16)
  const large = await kexecs(4, 12 << 20);
  // the floor moves the whole hand-over, as the image without a pre-copy does
  const dd = ddFloorMs(large.handoverBytes);
  line('4 sessions x 12 MiB', large, dd, 'dd write+fsync+read');
  // every page written in the blackout (streamed to the new daemon): what a state that changes
  // wholly between the pre-copy and the freeze costs
  line('same, no pre-copy', await kexecs(4, 12 << 20, { LUO_IMAGE_PRECOPY: '0' }), dd, 'dd write+fsync+read');
  // a VMM's case: the bytes live in real files (or memfds) luo reads at the freeze, compared
  // page by page with what the pre-copy took
  line('4 real files x 12 MiB', await kexecs(4, 12 << 20, {}, true), dd, 'dd write+fsync+read');
  line('same, no pre-copy', await kexecs(4, 12 << 20, { LUO_IMAGE_PRECOPY: '0' }, true), dd, 'dd write+fsync+read');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await runDaemonBench();
