/**
 * Load: 64 clients doing create/preserve/close loops against one daemon for a while (npm test: 5 s
 * over 4 host processes; the stress run: 30 s over 64, or LUO_LOAD_SECONDS / LUO_LOAD_PROCS),
 * then a kexec into a new daemon process. Only the expected errnos (EBUSY for the exclusive device, EEXIST for a repeated token,
 * EINVAL for FINISH on an outgoing session), no leaked sessions or pages, and the preserved
 * blocks the old kernel handed over are exactly the blocks the new kernel reserves.
 *
 * Clients are spread over LUO_LOAD_PROCS host processes (default 64, one host process per
 * client; fewer for a quick run): each client has its own pid in HELLO, so the daemon sees 64
 * processes either way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { LuoClient } from '../../src/client/index.ts';
import { contentOf, pagesOf } from './load-data.ts';
import { cleanup, ROOT, startDaemon, tempDir } from './helpers.ts';
import { progress, scaled } from '../helpers/scale.ts';

const SECONDS = scaled(5, 30, 'LUO_LOAD_SECONDS');
const PROCS = scaled(4, 64, 'LUO_LOAD_PROCS');
const CLIENTS = 64;

interface Report {
  phase: string;
  ops: number;
  errnos: Record<string, number>;
  unexpected: string[];
}

function lines(child: ChildProcess): () => Promise<Report> {
  let buf = '';
  const queue: Report[] = [];
  const waiters: Array<(r: Report) => void> = [];
  child.stdout!.on('data', (b: Buffer) => {
    buf += b.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const r = JSON.parse(buf.slice(0, i)) as Report;
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(r);
      else queue.push(r);
    }
  });
  return () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((r) => waiters.push(r)));
}

test(`load: ${CLIENTS} clients for ${SECONDS} s over ${PROCS} processes, then a kexec`, async () => {
  const dir = tempDir('load');
  const workers: ChildProcess[] = [];
  try {
    const d = await startDaemon(dir, ['--ram', '4G']);
    const ctl = await LuoClient.connect(d.socket);
    const base = await ctl.status();
    const per = CLIENTS / PROCS;
    const t0 = performance.now();
    for (let i = 0; i < PROCS; i++) {
      workers.push(spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test/daemon/load-worker.ts'), d.socket, String(per), String((1 << 22) + i * per), String(SECONDS * 1000)], {
        cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'],
      }));
    }
    const next = workers.map(lines);
    progress(`load: ${PROCS} worker processes started; churning for ${SECONDS} s once each is up`);
    let reported = 0;
    const churned = await Promise.all(next.map((n) => n().then((r) => {
      if (++reported % Math.max(1, PROCS / 4) === 0) progress(`load: ${reported} of ${PROCS} workers done`);
      return r;
    })));
    const churnMs = performance.now() - t0;
    const ops = churned.reduce((n, r) => n + r.ops, 0);
    const errnos: Record<string, number> = {};
    for (const r of churned) for (const [k, v] of Object.entries(r.errnos)) errnos[k] = (errnos[k] ?? 0) + v;
    assert.deepEqual(churned.flatMap((r) => r.unexpected), [], 'only expected errnos');
    assert.deepEqual(Object.keys(errnos).filter((k) => !['EBUSY', 'EEXIST', 'EINVAL'].includes(k)), []);
    console.log(`# load: ${ops} successful ops in ${(churnMs / 1000).toFixed(1)} s (${Math.round(ops / (churnMs / 1000))}/s incl. startup), errnos ${JSON.stringify(errnos)}`);

    // Everything was closed: no session, no preserved page left over.
    const mid = await ctl.status();
    assert.equal(mid.sessions.outgoing.length, 0, 'no leaked sessions');
    assert.equal(mid.preserved.pages, base.preserved.pages, 'no leaked preserved pages');
    assert.deepEqual(mid.preserved.byOrder, base.preserved.byOrder);
    assert.equal(mid.processes, CLIENTS + 1, 'one simulated process per client pid (+ this one)');

    // Each client keeps one session with known contents; then kexec.
    for (const w of workers) w.stdin!.write('final\n');
    const finals = await Promise.all(next.map((n) => n()));
    assert.deepEqual(finals.flatMap((r) => r.unexpected), []);
    const pids = Array.from({ length: CLIENTS }, (_, i) => (1 << 22) + i);
    const before = await ctl.status();
    assert.equal(before.sessions.outgoing.length, CLIENTS);
    const dataPages = pids.reduce((n, p) => n + pagesOf(p), 0);
    const filePages = before.sessions.outgoing.reduce((n, s) => n + s.files.reduce((m, f) => m + (f.pages ?? 0), 0), 0);
    assert.equal(filePages, dataPages, 'every preserved memfd holds exactly its pages');
    assert.ok(before.preserved.pages >= base.preserved.pages + dataPages);

    const k = await ctl.kexec();
    assert.equal(await d.exited, 0);
    assert.equal(k.stats['preservedPages'], before.preserved.pages, 'the hand-over carries every preserved page');
    const c2 = await LuoClient.connectRetry(d.socket);
    const dev = await c2.openDevice();
    const st = await c2.status();
    assert.equal(st.sessions.incoming.length, CLIENTS);
    const reserved = /KHO: reserved (\d+) preserved block\(s\)/.exec((await import('node:fs')).readFileSync(d.log, 'utf8').split('luod: kexec: image')[1] ?? '');
    assert.equal(Number(reserved?.[1]), before.preserved.blocks, 'the new kernel reserves exactly the blocks the old one preserved');
    for (const pid of pids) {
      const s = await dev.retrieveSession(`final-${pid}`);
      const f = await s.retrieve(0xf00 + pid);
      assert.ok(Buffer.from(f.content).equals(Buffer.from(contentOf(pid))), `final-${pid} contents`);
      assert.equal(f.pos, pid % 4096);
      await s.finish();
      await s.close();
    }
    await dev.close();
    const end = await c2.status();
    assert.equal(end.sessions.incoming.length, 0);
    assert.equal(end.handles, 0);
    console.log(`# kexec after load: ${before.preserved.pages} preserved pages, image ${k.stats['imageBytes']} bytes, ${Number(k.stats['totalMs']).toFixed(0)} ms`);
    await c2.shutdown();
  } finally {
    for (const w of workers) w.kill('SIGKILL');
    await cleanup(dir);
  }
});
