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
import { LUO_BIN, processesMentioning } from '../daemon/helpers.ts';

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
