/**
 * `luo fleet demo` end to end: its own 3-member etcd, runners and controllers; the threshold trips and
 * the campaign pauses and resumes, the leader is killed and the standby finishes; every process and
 * directory it started is gone afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { LUO_BIN, processesMentioning, until } from '../daemon/helpers.ts';

test('luo fleet demo --hosts 24 --json: done, one pause and resume, a new leader, fall-backs counted, nothing left behind', async () => {
  const before = new Set(readdirSync(tmpdir()).filter((d) => d.startsWith('luo-fleet-demo-')));
  const r = await new Promise<{ code: number | null; out: string; err: string }>((resolve) => {
    const c = spawn(process.execPath, [LUO_BIN, 'fleet', 'demo', '--hosts', '24', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (b: Buffer) => (out += b.toString()));
    c.stderr.on('data', (b: Buffer) => (err += b.toString()));
    c.once('exit', (code) => resolve({ code, out, err }));
  });
  assert.equal(r.code, 0, r.err);
  const s = JSON.parse(r.out) as { hosts: number; phase: string; pauses: string[]; leaders: string[]; waves: Array<{ hosts: number; counts: Record<string, number> }> };
  assert.equal(s.phase, 'done');
  assert.equal(s.waves.reduce((a, w) => a + w.hosts, 0), 24);
  const sum = (k: string) => s.waves.reduce((a, w) => a + (w.counts[k] ?? 0), 0);
  assert.deepEqual([sum('updated'), sum('fell-back'), sum('refused')], [22, 1, 1]);
  assert.equal(s.pauses.length, 1);
  assert.match(s.pauses[0]!, /failure\(s\), more than the 0 it allows/);
  assert.equal(s.leaders.length, 2);
  const leftover = readdirSync(tmpdir()).filter((d) => d.startsWith('luo-fleet-demo-') && !before.has(d));
  assert.deepEqual(leftover, []);
  assert.deepEqual(processesMentioning('luo-fleet-demo-'), []);
});

test('luo fleet demo --dashboard 0: the fleet page and its snapshots are served during the demo and after it until SIGINT; then everything is removed', async () => {
  const c = spawn(process.execPath, [LUO_BIN, 'fleet', 'demo', '--hosts', '12', '--json', '--dashboard', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  c.stdout.on('data', (b: Buffer) => (out += b.toString()));
  c.stderr.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((r) => c.once('exit', r));
  const gone = (): string | undefined => (c.exitCode !== null ? `the demo exited early: ${err}` : undefined);
  try {
    await until(() => err.includes('"dashboard"'), 'the dashboard URL', gone);
    const url = (JSON.parse(err.split('\n').find((l) => l.includes('"dashboard"'))!) as { dashboard: string }).dashboard;
    const page = await fetch(url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /fleet dashboard/);
    await until(() => err.includes('"waiting"'), 'the demo to finish and wait', gone);
    type Snap = { hostCount: number; campaigns: Array<{ state: { phase: string }; cells: string }> };
    const read = async (): Promise<Snap> => (await (await fetch(new URL('/api/snapshot', url))).json()) as Snap;
    // the page's snapshots follow etcd a moment behind: wait for the one that shows the campaign done
    await until(async () => (await read()).campaigns[0]?.state.phase === 'done', 'the dashboard to show the campaign done', gone);
    const snap = await read();
    assert.equal(snap.hostCount, 12);
    assert.equal(snap.campaigns[0]!.cells.length, 12);
    const hosts = (await (await fetch(new URL('/api/fleet/hosts', url))).json()) as { ids: string[] };
    assert.equal(hosts.ids.length, 12);
    assert.equal(JSON.parse(out).phase, 'done');
    c.kill('SIGINT');
    assert.equal(await exited, 0);
    assert.deepEqual(processesMentioning('luo-fleet-demo-'), []);
    await assert.rejects(fetch(url), 'the dashboard is closed');
  } finally {
    if (c.exitCode === null) {
      c.kill('SIGINT'); // the demo removes what it started
      await exited;
    }
  }
});
