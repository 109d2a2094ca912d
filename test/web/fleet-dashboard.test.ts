/**
 * `luo dashboard --fleet` in a real browser (Debian's chromium through playwright-core) against a
 * real etcd, a real host runner and controller: the page shows the hosts before any campaign, then a
 * campaign live over Server-Sent Events from the etcd watch — waves, a grid cell per host coloured by
 * phase (read back from the canvas), the fall-back that pauses the campaign with its reason, the
 * resume, the blackout histogram with the SLO line, the controller's leader and events — with no
 * console errors, and a screenshot. A second case fills the grid with 10 000 hosts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { launchChromium, openPage, waitForShown } from './browser.ts';
import { LUO_BIN, until } from '../daemon/helpers.ts';
import { hostsPresent, startFleet, type Fleet } from '../fleet/helpers.ts';

/** `luo dashboard --fleet --port 0 --json` as a real process; its URL. */
async function startDashboard(f: Fleet): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [LUO_BIN, 'dashboard', '--fleet', '--port', '0', '--json'], { env: { ...process.env, LUO_ETCD: f.cluster.endpoints.join(',') }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (out += b.toString()));
  await until(() => out.includes('\n'), 'the dashboard to print its URL', () => (child.exitCode !== null ? `the dashboard exited: ${out}` : undefined));
  const { url } = JSON.parse(out.split('\n')[0]!) as { url: string };
  return { child, url };
}

/** The colour of grid cell `i` as the canvas drew it ("#rrggbb"). */
async function cellColour(page: Page, i: number): Promise<string> {
  return (await page.evaluate(`(() => {
    const c = document.getElementById('grid');
    const n = Number(document.body.dataset.hosts);
    const w = c.clientWidth;
    const cell = Math.max(3, Math.min(16, Math.floor(Math.sqrt((w * 640) / Math.max(1, n)))));
    const cols = Math.max(1, Math.floor(w / cell));
    const dpr = window.devicePixelRatio || 1;
    const x = Math.floor(((${i} % cols) * cell + 1) * dpr), y = Math.floor((Math.floor(${i} / cols) * cell + 1) * dpr);
    // copied to a 1x1 canvas made for readback (reading the page's canvas itself makes Chromium warn)
    const probe = document.createElement('canvas');
    probe.width = probe.height = 1;
    const g = probe.getContext('2d', { willReadFrequently: true });
    g.drawImage(c, x, y, 1, 1, 0, 0, 1, 1);
    const d = g.getImageData(0, 0, 1, 1).data;
    return '#' + [d[0], d[1], d[2]].map((v) => v.toString(16).padStart(2, '0')).join('');
  })()`)) as string;
}

test('fleet dashboard in headless chromium: hosts, a campaign live over SSE, a fall-back and its pause, resume, histogram, events, a screenshot', async (t) => {
  const f = await startFleet('dashboard');
  let browser: Browser | undefined;
  let dash: ChildProcess | undefined;
  try {
    // 40 hosts; host 5 falls back (a corrupt hand-over); each update waits 100 ms so hosts are seen in flight
    await f.start('runner', ['host', '--id', 'h', '--count', '40', '--fail', 'h-0005=fell-back', '--update-delay-ms', '100']);
    await hostsPresent(f, 40);
    const d = await startDashboard(f);
    dash = d.child;
    browser = await launchChromium();
    const { page, problems } = await openPage(browser, d.url);
    await waitForShown(page, problems, 'body[data-hosts="40"][data-phase="none"]');
    assert.match(await page.locator('#cards').innerText(), /hosts\s*40[\s\S]*1 runner/i);
    assert.match(await page.locator('#waves-panel').innerText(), /Waves/);
    assert.equal(await cellColour(page, 0), '#1b2540', 'a host in no campaign');

    await f.start('controller', ['controller', '--id', 'ctl-1']);
    const created = f.create('roll', [
      'name: roll',
      'target: "7.3.5"',
      'waves:',
      '  - { name: canary, hosts: 1, maxConcurrent: 1 }',
      '  - { name: rest, maxConcurrent: 4, maxFailures: 0 }',
      'policy: { blackoutSlo: 5s, hostTimeout: 5m }',
    ].join('\n'));
    assert.equal(created.code, 0, created.stderr);

    // live: the fall-back pauses the campaign; the page shows why, the failed host's cell is orange
    await waitForShown(page, problems, 'body[data-phase="paused"]');
    assert.match(await page.locator('#campaign-note').innerText(), /paused \(wave 1 "rest": 1 failure/);
    const failures = await page.locator('#failures').innerText();
    assert.match(failures, /h-0005\s+1\s+fell-back\s+LUO/);
    assert.equal(await cellColour(page, 5), '#f97316', 'the fallen-back host is drawn orange');
    assert.equal(await cellColour(page, 0), '#22c55e', 'the canary is drawn green (updated)');
    const seen = await page.locator('#events').innerText();
    assert.match(seen, /controller ctl-1 leads/);
    assert.match(seen, /roll: paused \(wave 1/);

    const resumed = f.luo(['campaign', 'resume', 'roll']);
    assert.equal(resumed.code, 0, resumed.stderr);
    await waitForShown(page, problems, 'body[data-phase="done"]');
    const cards = await page.locator('#cards').innerText();
    assert.match(cards, /updated\s*39\/40/i);
    assert.match(cards, /failures\s*1/i);
    assert.equal(await cellColour(page, 39), '#22c55e');
    const events = await page.locator('#events').innerText();
    assert.match(events, /roll: paused/);
    assert.match(events, /the operator asked to resume/);
    assert.match(events, /roll: done/);
    assert.match(await page.locator('#leader').innerText(), /ctl-1 leads/);
    // the histogram: 39 updated hosts binned, the SLO line labelled
    const snap = (await (await fetch(new URL('/api/snapshot', d.url))).json()) as { campaigns: Array<{ histogram: { bins: number[] }; sloMs: number }> };
    assert.equal(snap.campaigns[0]!.histogram.bins.reduce((a, b) => a + b, 0), 39);
    assert.equal(snap.campaigns[0]!.sloMs, 5000);
    assert.match(await page.locator('#histogram-note').innerText(), /39 updated · p50 .* ms/);

    const shot = join(f.dir, 'fleet-dashboard.png');
    await page.screenshot({ path: shot, fullPage: true, timeout: 0 });
    const png = readFileSync(shot);
    assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
    assert.ok(png.length > 30_000, `screenshot is only ${png.length} bytes`);
    if (process.env['LUO_KEEP_SCREENSHOT']) copyFileSync(shot, process.env['LUO_KEEP_SCREENSHOT']);
    t.diagnostic(`screenshot ${png.length} bytes`);
    assert.deepEqual(problems, []);
  } finally {
    await browser?.close();
    dash?.kill('SIGTERM');
    await f.stop();
  }
});

test('fleet dashboard: 10 000 hosts, every one a cell, the grid within one screen', async (t) => {
  const f = await startFleet('dashboard-10k');
  let browser: Browser | undefined;
  let dash: ChildProcess | undefined;
  try {
    await f.start('runner', ['host', '--id', 'big', '--count', '10000', '--ttl', '30']);
    await hostsPresent(f, 10_000);
    const d = await startDashboard(f);
    dash = d.child;
    browser = await launchChromium();
    const { page, problems } = await openPage(browser, d.url);
    await waitForShown(page, problems, 'body[data-hosts="10000"]');
    const box = await page.locator('#grid').boundingBox();
    assert.ok(box && box.height <= 720, `the grid is ${box?.height} px high`);
    assert.match(await page.locator('#grid-note').innerText(), /10000 host\(s\), ([3-9]|1\d)px each/);
    const ms = (await page.evaluate(`(() => { const t = performance.now(); window.dispatchEvent(new Event('resize')); return performance.now() - t; })()`)) as number;
    t.diagnostic(`a full redraw of the page with 10 000 cells took ${ms.toFixed(1)} ms (not asserted)`);
    assert.deepEqual(problems, []);
  } finally {
    await browser?.close();
    dash?.kill('SIGTERM');
    await f.stop();
  }
});
