/**
 * `luo dashboard` in a real browser: Debian's chromium driven by playwright-core loads the page
 * served over an in-process machine that has performed a kexec, with no console errors, and shows
 * the post-kexec machine (liveupdate number, sessions, a preserved region in the memory map, the
 * timeline bar); a second kexec arrives live over Server-Sent Events; a screenshot is produced.
 * There is no skip: without /usr/bin/chromium the test fails and says how to install it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { launchChromium, openPage, waitForShown } from './browser.ts';
import { Machine } from '../../src/kernel/machine.ts';
import { DEFAULT_BUILD } from '../../src/kernel/build.ts';
import { memfdCreate } from '../../src/handlers/memfd-file.ts';
import { MachineFeed, SnapshotHub, startDashboardServer } from '../../src/web/server.ts';


/**
 * A 16 GiB machine with two sessions (guest RAM in 2 MiB folios, device state), after one live
 * update; built with the test FLBs (CONFIG_LIVEUPDATE_TEST) and a declared subsystem "kvm".
 */
function machineAfterKexec(): { m: Machine; preserveAgain: () => void } {
  const m = new Machine({ ramSize: 16n << 30n, build: { ...DEFAULT_BUILD, liveupdateTest: true, subsystems: [{ name: 'kvm', data: 0x1234n }] } });
  const k = m.kernel;
  k.luo!.open();
  for (const [name, size] of [['vm-a', 64 << 20], ['vm-b', 32 << 20]] as const) {
    const s = k.luo!.createSession(name);
    const ram = memfdCreate({ ...k.memfd, shmemHuge: 'always' as const }, `${name}-ram`, 0);
    ram.ftruncate(size);
    ram.pwrite(new TextEncoder().encode(`${name} guest memory`), 4096);
    const st = memfdCreate(k.memfd, `${name}-state`, 0);
    st.write(new Uint8Array(12 * 1024).fill(7));
    k.luo!.sessions.preserveFile(s, 0x100n, ram);
    k.luo!.sessions.preserveFile(s, 0x200n, st);
  }
  k.luo!.close();
  // Live update 1: the new kernel retrieves vm-a, finishes it and preserves it again; vm-b stays incoming.
  const k2 = m.kexec();
  k2.luo!.open();
  const inc = k2.luo!.retrieveSession('vm-a');
  const ram = k2.luo!.sessions.retrieveFile(inc, 0x100n);
  const st = k2.luo!.sessions.retrieveFile(inc, 0x200n);
  k2.luo!.sessions.finish(inc);
  k2.luo!.sessions.release(inc);
  const out = k2.luo!.createSession('vm-a');
  k2.luo!.sessions.preserveFile(out, 0x100n, ram);
  k2.luo!.sessions.preserveFile(out, 0x200n, st);
  const preserveAgain = (): void => {
    // Live update 2 then re-preserves vm-a in the third kernel.
    const k3 = m.kernel;
    k3.luo!.open();
    const i = k3.luo!.retrieveSession('vm-a');
    const r = k3.luo!.sessions.retrieveFile(i, 0x100n);
    k3.luo!.sessions.finish(i);
    k3.luo!.sessions.release(i);
    const o = k3.luo!.createSession('vm-a');
    k3.luo!.sessions.preserveFile(o, 0x100n, r);
  };
  return { m, preserveAgain };
}

function pngSize(b: Buffer): { width: number; height: number } {
  assert.ok(b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), 'the screenshot is not a PNG');
  assert.equal(b.subarray(12, 16).toString('latin1'), 'IHDR');
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

test('dashboard in headless chromium: the machine after a kexec, live updates over SSE, a screenshot', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'luo-dashboard-test-'));
  const { m, preserveAgain } = machineAfterKexec();
  const hub = new SnapshotHub({ source: { kind: 'machine', label: 'test machine' }, status: 'starting', done: false, error: null, machine: null, timeline: [], daemon: null });
  const feed = new MachineFeed(hub, m, { kind: 'machine', label: 'test machine (16 GiB)' });
  // The feed saw the first kernel; the kexec already happened, so seed its timeline explicitly.
  feed.recordUpdate(1, [{ name: 'serialize', ms: m.kernel.kexecStats!.serializeMs }, { name: 'hand-over', ms: m.kernel.kexecStats!.handoverMs }, { name: 'boot + KHO walk', ms: m.kernel.kexecStats!.bootMs }, { name: 'LUO restore', ms: 1.5 }, { name: 'retrieve', ms: 2 }, { name: 'finish', ms: 0.5 }]);
  feed.refresh({ status: 'after live update 1' });
  const server = await startDashboardServer({ hub, port: 0 });
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  let browser: Browser | undefined;
  try {
    browser = await launchChromium();
    const { page, problems } = await openPage(browser, server.url);
    await waitForShown(page, problems, 'body[data-liveupdate="1"]');

    // Cards: liveupdate_num 1 after a hand-over.
    const first = await page.locator('.card.hl').innerText();
    assert.match(first, /liveupdate_num\s*1/i);
    assert.match(first, /hand-over/);
    // Sessions: vm-a outgoing again (with its tokens and handler), vm-b still incoming.
    const sessions = await page.locator('#sessions').innerText();
    assert.match(sessions, /OUTGOING \(1\)/i);
    assert.match(sessions, /INCOMING \(1\)/i);
    assert.match(sessions, /vm-a[\s\S]*0x100[\s\S]*memfd-v2/);
    assert.match(sessions, /vm-b/);
    // Drivers: the subsystem with what it got from the previous kernel, the test FLBs with their
    // files now (vm-a's two memfds preserved again) and what came in (retrieved with vm-a)
    assert.match(await page.locator('#subsystems').innerText(), /SUBSYSTEMS \(UPDATED\)[\s\S]*kvm\s+yes\s+0x1234/i);
    const flbs = await page.locator('#flbs').innerText();
    assert.match(flbs, /FLBs \(3\)/i);
    assert.match(flbs, /liveupdate-test-flb-v0\s+memfd-v2\s+2\s+retrieved: 2 file\(s\), data 0x[0-9a-f]+/);
    // Timeline: one live update, six phases with a total.
    assert.equal(await page.locator('.tl-entry').count(), 1);
    assert.equal(await page.locator('.tl-entry .tl-seg').count(), 6);
    assert.match(await page.locator('.tl-entry .tl-total').innerText(), /\d ms/);
    // KHO tree: the outgoing root FDT with LUO's subtree.
    assert.match(await page.locator('#dts').innerText(), /compatible = "kho-v4";[\s\S]*LUO \{/);
    // Legend and map: preserved blocks, incoming blocks, poisoned memory.
    const legend = await page.locator('#legend').innerText();
    assert.match(legend, /preserved, order 9/);
    assert.match(legend, /handed over/);
    assert.match(legend, /poisoned/);
    // A preserved region is drawn: find preserved-green pixels on the canvas, hover one.
    // (Page-side code as a string: the project's tsconfig has no DOM types.)
    const hit = (await page.evaluate(`(() => {
      const c = document.getElementById('map');
      c.scrollIntoView({ block: 'center' });
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const dpr = window.devicePixelRatio || 1;
      const found = [];
      for (let i = 0; i < d.length; i += 4) {
        const r = d[i], g = d[i + 1], b = d[i + 2];
        if (g > 150 && g > r + 20 && b < 170 && r < 200) found.push(i / 4);
      }
      const px = found[Math.floor(found.length / 2)];
      const rect = c.getBoundingClientRect();
      return { count: found.length, at: px === undefined ? null : { x: rect.left + (px % c.width) / dpr + 0.5, y: rect.top + Math.floor(px / c.width) / dpr + 0.5 } };
    })()`)) as { count: number; at: { x: number; y: number } | null };
    assert.ok(hit.count > 0 && hit.at, 'no preserved (green) pixels in the memory map');
    await page.mouse.move(hit.at.x, hit.at.y);
    await waitForShown(page, problems, '#tooltip:not([hidden])');
    assert.match(await page.locator('#tooltip').innerText(), /preserved, order/);

    // Live: a second kexec reaches the open page over Server-Sent Events.
    m.kexec();
    preserveAgain();
    feed.refresh({ status: 'after live update 2' });
    await waitForShown(page, problems, 'body[data-liveupdate="2"]');
    assert.equal(await page.locator('.tl-entry').count(), 2);
    assert.match(await page.locator('#status').innerText(), /after live update 2/);

    await page.mouse.move(5, 5);
    await page.evaluate('window.scrollTo(0, 0)');
    const shot = join(dir, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true, timeout: 0 });
    const png = readFileSync(shot);
    const { width, height } = pngSize(png);
    assert.ok(width >= 1000 && height >= 800, `screenshot is ${width}x${height}`);
    assert.ok(png.length > 30_000, `screenshot is only ${png.length} bytes`);
    t.diagnostic(`screenshot ${shot} (${width}x${height}, ${png.length} bytes)`);
    assert.deepEqual(problems, []);
  } finally {
    await browser?.close();
    await server.close();
    if (!process.env['LUO_KEEP_SCREENSHOT']) rmSync(dir, { recursive: true, force: true });
  }
});
