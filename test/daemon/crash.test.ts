/**
 * kill -9 of the daemon at random points during a kexec (10 trials in npm test, 50 in the stress
 * run, or LUO_CRASH_TRIALS): every
 * trial ends with the state dir holding either the old image (the state the old daemon booted
 * from) or the new one complete — booted and checked byte for byte — never a corrupt image
 * accepted. The first trials kill at named phases (LUO_DAEMON_CRASH_AT), the rest at random times.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { LuoClient } from '../../src/client/index.ts';
import { loadHandover } from '../../src/daemon/kexec.ts';
import { Machine } from '../../src/kernel/machine.ts';
import { processesOf } from '../../src/uapi/process.ts';
import { O_RDWR } from '../../src/uapi/file.ts';
import { luoRetrieveSession, luoSessionRetrieveFd } from '../../src/uapi/libliveupdate.ts';
import { MemfdFile } from '../../src/handlers/memfd-file.ts';
import { cleanup, processesMentioning, sleep, startDaemon, tempDir, until } from './helpers.ts';
import { progress, scaled } from '../helpers/scale.ts';

const TRIALS = scaled(10, 50, 'LUO_CRASH_TRIALS');
const PARALLEL = scaled(2, 4, 'LUO_CRASH_PARALLEL');
const PHASES = ['serialized', 'image-written', 'spawned', 'ready', 'made-whole'];
const OLD = new TextEncoder().encode('the old state: image A');
const NEW_SIZE = 4 << 20;
const newBytes = (trial: number): Uint8Array => {
  const b = new Uint8Array(NEW_SIZE);
  for (let i = 0; i < b.length; i += 4096) b[i] = (trial + i / 4096) & 0xff;
  return b;
};

let root: string;
let imageA: string;

before(async () => {
  root = tempDir('crash');
  // Image A: a daemon with one session, killed right after writing its kexec image.
  mkdirSync(join(root, 'a'), { recursive: true });
  const d = await startDaemon(join(root, 'a'), [], { LUO_DAEMON_CRASH_AT: 'image-written' });
  const c = await LuoClient.connect(d.socket);
  const dev = await c.openDevice();
  const s = await dev.createSession('old-session');
  await s.preserveBuffer(OLD, 1);
  await dev.close();
  await assert.rejects(c.kexec());
  await d.exited;
  imageA = join(d.stateDir, 'luo.img');
  assert.ok(existsSync(imageA));
  // killed before the image was made whole: it is written over the base it names, kept beside it
  assert.equal(readdirSync(d.stateDir).filter((f) => f.startsWith('luo.base.')).length, 1);
});

/** Copies image A and the base it needs into a trial's state dir (a state dir is copied whole). */
function copyImageA(stateDir: string): void {
  const from = join(imageA, '..');
  for (const f of readdirSync(from)) if (f === 'luo.img' || f.startsWith('luo.base.')) copyFileSync(join(from, f), join(stateDir, f));
}

after(async () => {
  await cleanup(root);
});

/** Boots the state dir's image in-process (as `luo serve --resume` would) and says which state it is. */
async function outcome(stateDir: string, trial: number): Promise<'old' | 'new'> {
  const h = await loadHandover(join(stateDir, 'luo.img')); // throws on anything corrupt
  const m = new Machine({ ramSize: h.memory.size, memory: h.memory, boot: h.params });
  const p = processesOf(m.kernel).spawn();
  const dev = p.open('/dev/liveupdate', O_RDWR);
  assert.ok(dev >= 0);
  const names = m.kernel.luo!.sessions.incoming.map((s) => s.name).sort();
  const read = (name: string, token: number): Uint8Array => {
    const s = luoRetrieveSession(p, dev, name);
    assert.ok(s >= 0, `retrieve ${name}`);
    const fd = luoSessionRetrieveFd(p, s, token);
    assert.ok(fd >= 0);
    const f = p.file(fd) as MemfdFile;
    return f.pread(f.stat().size, 0);
  };
  if (names.length === 1 && names[0] === 'old-session') {
    assert.deepEqual(read('old-session', 1), OLD);
    return 'old';
  }
  assert.deepEqual(names, [`new-session-${trial}`], 'the state is either the old or the new one');
  assert.ok(Buffer.from(read(`new-session-${trial}`, 2)).equals(Buffer.from(newBytes(trial))), 'new contents intact');
  return 'new';
}

async function trial(i: number): Promise<{ outcome: 'old' | 'new'; how: string; ms: number }> {
  const t0 = performance.now();
  const dir = join(root, `t${i}`);
  mkdirSync(join(dir, 'state'), { recursive: true });
  copyImageA(join(dir, 'state'));
  const phase = i < PHASES.length * 2 ? PHASES[i % PHASES.length]! : undefined;
  // image A was written by another daemon's socket: named explicitly (--resume would refuse it)
  const d = await startDaemon(dir, ['--from-image', join(dir, 'state', 'luo.img')], phase ? { LUO_DAEMON_CRASH_AT: phase } : {});
  const c = await LuoClient.connect(d.socket);
  const dev = await c.openDevice();
  const s = await dev.createSession(`new-session-${i}`);
  await s.preserveBuffer(newBytes(i), 2);
  await dev.close();
  // Half the random kills aim at serialization and the image write (the first tens of ms).
  const delay = phase ? 0 : Math.random() * (i % 2 ? 60 : 600);
  const k = c.kexec().then(() => 'done', () => 'lost');
  if (!phase) {
    await sleep(delay);
    try {
      process.kill(d.child.pid!, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  await d.exited;
  await k;
  // A new daemon may have been started: let it come up or die, then kill it too.
  await until(async () => {
    const others = processesMentioning(dir);
    return others.length === 0 || (await import('../../src/daemon/server.ts')).LuoDaemon.alive(d.socket);
  }, 'the new daemon to settle');
  for (const pid of processesMentioning(dir)) process.kill(pid, 'SIGKILL');
  const o = await outcome(join(dir, 'state'), i);
  return { outcome: o, how: phase ?? `random ${delay.toFixed(0)} ms`, ms: performance.now() - t0 };
}

test(`kill -9 during kexec, ${TRIALS} trials: old or new state, never corrupt`, async () => {
  const results: Array<{ outcome: 'old' | 'new'; how: string; ms: number }> = [];
  let next = 0;
  await Promise.all(Array.from({ length: PARALLEL }, async () => {
    while (next < TRIALS) {
      const i = next++;
      results[i] = await trial(i);
      if ((i + 1) % 10 === 0) progress(`kill -9 trials: ${i + 1} of ${TRIALS}`);
    }
  }));
  const count = (o: string) => results.filter((r) => r.outcome === o).length;
  console.log(`# ${TRIALS} trials: ${count('old')} old, ${count('new')} new; mean ${(results.reduce((n, r) => n + r.ms, 0) / TRIALS).toFixed(0)} ms per trial`);
  assert.equal(results.length, TRIALS);
  // The named phases are deterministic.
  for (let i = 0; i < Math.min(TRIALS, PHASES.length * 2); i++) assert.equal(results[i]!.outcome, results[i]!.how === 'serialized' ? 'old' : 'new', results[i]!.how);
});
