/**
 * Campaign files and their plans, without etcd: the strict schema with line/field errors, waves by
 * count, percent and "the rest", safe mode, failure limits by count or percent, the luo plan check,
 * and the JSON Schema editors get.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { campaignJsonSchema, CampaignFileError, parseCampaign, planCampaign } from '../../src/fleet/campaign.ts';
import type { HostRecord } from '../../src/fleet/keys.ts';
import { isFailure } from '../../src/fleet/result.ts';

const hosts = (n: number, release = '7.3.4', labels: Record<string, string> = {}): HostRecord[] =>
  Array.from({ length: n }, (_, i) => ({ id: `h-${String(i).padStart(3, '0')}`, runner: 'r', release, labels, lease: '1', state: 'idle' as const }));

test('waves by count, percent and the rest; failure limits by count or percent; durations', () => {
  const spec = parseCampaign([
    'name: c1',
    'target: "7.3.5"',
    'waves:',
    '  - { name: canary, hosts: 1, maxConcurrent: 1, soak: 2s }',
    '  - { name: quarter, percent: 25, maxConcurrent: 5, maxFailurePct: 10 }',
    '  - { name: rest, maxConcurrent: 20, maxFailures: 3 }',
    'policy: { blackoutSlo: 500ms, hostTimeout: 1m }',
  ].join('\n'));
  assert.deepEqual([spec.policy.blackoutSloMs, spec.policy.hostTimeoutMs], [500, 60_000]);
  const p = planCampaign(spec, hosts(100));
  assert.deepEqual(p.waves.map((w) => [w.name, w.hosts.length, w.maxConcurrent, w.maxFailures, w.soakMs]), [['canary', 1, 1, 0, 2000], ['quarter', 25, 5, 2, 0], ['rest', 74, 20, 3, 0]]);
  assert.equal(p.waves[0]!.hosts[0], 'h-000', 'hosts go to waves in id order');
  assert.equal(new Set(p.waves.flatMap((w) => w.hosts)).size, 100);
});

test('safe mode puts one host alone first; a selection by labels and releases', () => {
  const spec = parseCampaign('name: c2\ntarget: "7.3.5"\nselect: { labels: { rack: r1 }, releases: ["7.3.4"] }\nwaves: [{ name: all, maxConcurrent: 4 }]\npolicy: { safeMode: true }\n');
  const p = planCampaign(spec, [...hosts(3, '7.3.4', { rack: 'r1' }), ...hosts(2, '7.3.4', { rack: 'r2' }).map((h) => ({ ...h, id: `x-${h.id}` }))]);
  assert.deepEqual(p.waves.map((w) => [w.name, w.hosts.length]), [['safe-mode', 1], ['all', 2]]);
});

test('hosts left in no wave, a wave that gets none, and hops luo plan refuses are errors', () => {
  const left = parseCampaign('name: c3\ntarget: "7.3.5"\nwaves: [{ name: a, hosts: 2, maxConcurrent: 1 }]\n');
  assert.throws(() => planCampaign(left, hosts(5)), /3 selected host\(s\) are in no wave/);
  const none = parseCampaign('name: c4\ntarget: "7.3.5"\nwaves: [{ name: a, maxConcurrent: 1 }, { name: b, maxConcurrent: 1 }]\n');
  assert.throws(() => planCampaign(none, hosts(5)), /wave 1 "b" gets no host/);
  const hop = parseCampaign('name: c5\ntarget: "mm-granular"\nwaves: [{ name: a, maxConcurrent: 1 }]\n');
  assert.throws(() => planCampaign(hop, hosts(2)), /2 host\(s\) cannot live-update to mm-granular \(luo plan\): 7\.3\.4 -> mm-granular: KHO:/);
  const allowed = parseCampaign('name: c6\ntarget: "mm-granular"\nwaves: [{ name: a, maxConcurrent: 1 }]\npolicy: { allowColdBoot: true }\n');
  assert.equal(Object.keys(planCampaign(allowed, hosts(2)).coldBoot).length, 2);
});

test('the schema: every problem with line, column and field', () => {
  try {
    parseCampaign('name: ok\ntarget: "7.3.5"\nwaves:\n  - { name: a, hosts: 1, percent: 5, maxConcurrent: 0 }\npolicy: { hostTimeout: soon, failOn: [nope] }\n', 'x.yaml');
    assert.fail('accepted');
  } catch (e) {
    assert.ok(e instanceof CampaignFileError);
    const got = e.issues.map((i) => `${i.line}:${i.col} ${i.path}: ${i.message}`);
    assert.ok(got.some((l) => /^4:\d+ waves\[0\]\.maxConcurrent: must be between 1 and 100000, got 0$/.test(l)), got.join('\n'));
    assert.ok(got.some((l) => /^5:\d+ policy\.hostTimeout: expected a duration/.test(l)), got.join('\n'));
    assert.ok(got.some((l) => /^5:\d+ policy\.failOn\[0\]: expected one of fell-back, refused, timed-out, verify-failed, slo, got "nope"$/.test(l)), got.join('\n'));
  }
  const schema = campaignJsonSchema() as { required: string[]; properties: Record<string, unknown> };
  assert.deepEqual(schema.required, ['name', 'target', 'waves']);
});

test('what counts as a failure follows the policy, the blackout SLO included', () => {
  const r = { host: 'h', from: '7.3.4', to: '7.3.5', wave: 0, at: 0, by: 'r' };
  assert.equal(isFailure({ ...r, outcome: 'updated', blackoutMs: 900 }, ['slo'], 500), true);
  assert.equal(isFailure({ ...r, outcome: 'updated', blackoutMs: 900 }, ['fell-back'], 500), false);
  assert.equal(isFailure({ ...r, outcome: 'timed-out' }, ['fell-back'], undefined), false);
  assert.equal(isFailure({ ...r, outcome: 'fell-back' }, ['fell-back'], undefined), true);
});

test('maintenance windows: UTC spans, wrapping past midnight, on chosen weekdays; validated in the file', async () => {
  const { inWindow, admissionOpen } = await import('../../src/fleet/window.ts');
  const at = (iso: string): number => Date.parse(iso);
  // 2026-12-02 is a Wednesday
  const night = { from: 22 * 60, to: 4 * 60, days: ['wed' as const] };
  assert.equal(inWindow(night, at('2026-12-02T23:30:00Z')), true, 'Wednesday evening');
  assert.equal(inWindow(night, at('2026-12-03T03:59:00Z')), true, 'the same window, Thursday morning');
  assert.equal(inWindow(night, at('2026-12-03T04:00:00Z')), false, 'its end is open');
  assert.equal(inWindow(night, at('2026-12-03T23:30:00Z')), false, 'Thursday evening: no window opens');
  assert.equal(inWindow({ from: 9 * 60, to: 17 * 60 }, at('2026-12-05T12:00:00Z')), true, 'every day when no days are given');
  assert.equal(admissionOpen([], 0), true);
  assert.equal(admissionOpen([night], at('2026-12-02T12:00:00Z')), false);
  const spec = parseCampaign('name: w\ntarget: "7.3.5"\nwaves: [{ name: a, maxConcurrent: 1 }]\nwindows: [{ from: "22:00", to: "04:00", days: [wed, thu] }]\n');
  assert.deepEqual(spec.windows, [{ from: 1320, to: 240, days: ['wed', 'thu'] }]);
  assert.throws(() => parseCampaign('name: w\ntarget: "7.3.5"\nwaves: [{ name: a, maxConcurrent: 1 }]\nwindows: [{ from: "25:00", to: "04:00", days: [someday] }]\n', 'w.yaml'),
    (e: Error) => /w\.yaml:4:19: windows\[0\]\.from: expected a UTC clock time "HH:MM", got "25:00"/.test(e.message) && e.message.includes('windows[0].days[0]: expected one of sun, mon, tue, wed, thu, fri, sat, got "someday"'));
});
