/** The dashboard's machine view: the memory map is painted from ranges, exact, and cheap at 1 TiB. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/kernel/machine.ts';
import { memfdCreate } from '../../src/handlers/memfd-file.ts';
import { coarsen, machineView, paintLayers } from '../../src/web/view.ts';
import { SnapshotHub, startDashboardServer } from '../../src/web/server.ts';

test('paintLayers: the highest layer wins, neighbours merge, gaps are the base', () => {
  const segs = paintLayers(100, 'free', [
    { id: 'a', ranges: [[10, 50]] },
    { id: 'b', ranges: [[20, 30], [30, 40], [90, 120]] },
    { id: 'a', ranges: [[35, 36]] },
  ]);
  assert.deepEqual(segs, [
    { s: 0, n: 10, c: 'free' }, { s: 10, n: 10, c: 'a' }, { s: 20, n: 15, c: 'b' }, { s: 35, n: 1, c: 'a' }, { s: 36, n: 4, c: 'b' },
    { s: 40, n: 10, c: 'a' }, { s: 50, n: 40, c: 'free' }, { s: 90, n: 10, c: 'b' },
  ]);
});

test('coarsen keeps totals and large segments, pools small ones', () => {
  const segs = Array.from({ length: 1000 }, (_, i) => ({ s: i * 2, n: 2, c: i % 2 ? 'x' : 'y' }));
  segs.push({ s: 2000, n: 100000, c: 'free' });
  const { segments, coarsened } = coarsen(segs, 102000, 50);
  assert.ok(coarsened && segments.length <= 60, `${segments.length} segments`);
  const tot: Record<string, number> = {};
  for (const g of segments) for (const [k, v] of Object.entries(g.mix ?? { [g.c!]: g.n })) tot[k] = (tot[k] ?? 0) + v;
  assert.deepEqual(tot, { y: 1000, x: 1000, free: 100000 });
  assert.deepEqual(segments.at(-1), { s: 2000, n: 100000, c: 'free' });
});

test('machineView of a 1 TiB machine after a kexec: from ranges, fast, every page accounted for', () => {
  const m = new Machine({ ramSize: 1n << 40n });
  const k = m.kernel;
  k.luo!.open();
  const s = k.luo!.createSession('big');
  const f = memfdCreate({ ...k.memfd, shmemHuge: 'always' as const }, 'ram', 0);
  f.ftruncate(512 << 20);
  f.pwrite(new Uint8Array(4096).fill(9), 1 << 20);
  k.luo!.sessions.preserveFile(s, 1n, f);
  k.luo!.close();
  const before = machineView(m);
  assert.ok(before.memory.categories.some((c) => c.id === 'p9' && c.pages === 131072), JSON.stringify(before.memory.categories));
  m.kexec();
  const t0 = performance.now();
  const v = machineView(m);
  const ms = performance.now() - t0;
  assert.ok(ms < 2000, `machineView took ${ms} ms`);
  assert.equal(v.liveupdateNum, 1);
  assert.equal(v.memory.pages, 1 << 28);
  const sum = v.memory.segments.reduce((a, g) => a + g.n, 0);
  assert.equal(sum, 1 << 28);
  assert.equal(v.memory.categories.reduce((a, c) => a + c.pages, 0), 1 << 28);
  assert.ok(v.memory.segments.length < 200);
  assert.ok(v.memory.contentTotals.poison > (1 << 28) - 200000, 'nearly everything is poisoned after the kexec');
  assert.ok(v.memory.categories.some((c) => c.id === 'incoming' && c.pages >= 131072));
  assert.match(v.kho!.incoming!.dts, /LUO \{/);
  assert.ok(JSON.stringify(v).length < 200_000);
});

test('dashboard server: snapshot JSON, SSE, static files, 404, Host check, loopback bind', async () => {
  const m = new Machine({ ramSize: 1n << 30n });
  const hub = new SnapshotHub({ source: { kind: 'machine', label: 't' }, status: 'x', done: false, error: null, machine: machineView(m), timeline: [], daemon: null });
  const srv = await startDashboardServer({ hub, port: 0 });
  try {
    assert.match(srv.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await fetch(srv.url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<canvas id="map"/);
    for (const p of ['app.js', 'style.css']) assert.equal((await fetch(`${srv.url}${p}`)).status, 200);
    assert.equal((await fetch(`${srv.url}nope`)).status, 404);
    const snap = (await (await fetch(`${srv.url}api/snapshot`)).json()) as { machine: { ramSize: string } };
    assert.equal(snap.machine.ramSize, '0x40000000');
    // SSE: the current snapshot, then each published one.
    const ac = new AbortController();
    const res = await fetch(`${srv.url}api/events`, { signal: ac.signal });
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    const reader = res.body!.getReader();
    let text = '';
    const readUntil = async (re: RegExp): Promise<void> => {
      while (!re.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error('SSE stream ended');
        text += new TextDecoder().decode(value);
      }
    };
    await readUntil(/event: snapshot\ndata: \{"source"/);
    hub.patch({ status: 'second' });
    await readUntil(/"status":"second"/);
    ac.abort();
    // A foreign Host header is refused (DNS rebinding).
    const { request } = await import('node:http');
    const code = await new Promise<number>((resolve, reject) => {
      const req = request(srv.url, { headers: { host: 'evil.example:80' } }, (r) => { r.resume(); resolve(r.statusCode ?? 0); });
      req.on('error', reject);
      req.end();
    });
    assert.equal(code, 421);
  } finally {
    await srv.close();
  }
});
