/**
 * `luo fleet demo`: the fleet on an embedded default, nothing to set up. A local 3-member etcd, two
 * host runners (500 hosts by default, in three racks), a controller and a standby, and a campaign
 * from 7.3.4 to 7.3.5 with a canary and three waves. A few hosts are set to fail (a corrupt hand-over:
 * a fall-back; a freeze fault: a refused kexec), so a wave's threshold trips and the campaign pauses;
 * the demo resumes it. Midway it kills the leading controller and the standby takes over. Every
 * process and directory it started is cleaned up, whatever happens.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { etcdDown, etcdUp } from '../fleet/etcd-local.ts';
import { type CampaignState, keys } from '../fleet/keys.ts';
import { FleetStore } from '../fleet/store.ts';
import { campaignStatus, type CampaignStatus } from './fleet.ts';
import { bold, dim, green, yellow } from './style.ts';
import { FleetFeed } from '../web/fleet-feed.ts';
import { type DashboardServer, startDashboardServer } from '../web/server.ts';

const BIN = fileURLToPath(new URL('../../bin/luo.mjs', import.meta.url));
const CAMPAIGN = 'demo-7-3-5';

export interface FleetDemoOptions {
  readonly hosts?: number;
  readonly json?: boolean;
  /** Serve the fleet dashboard on this port while the demo runs, and after it until a signal. */
  readonly dashboardPort?: number;
}

export interface FleetDemoSummary {
  readonly hosts: number;
  readonly phase: CampaignState['phase'];
  readonly waves: CampaignStatus['waves'];
  readonly blackoutMs: CampaignStatus['blackoutMs'];
  readonly pauses: string[];
  readonly leaders: string[];
  readonly elapsedMs: number;
}

export async function runFleetDemo(opts: FleetDemoOptions): Promise<number> {
  const total = opts.hosts ?? 500;
  if (!Number.isInteger(total) || total < 12) {
    process.stderr.write('luo fleet demo: --hosts is at least 12\n');
    return 2;
  }
  const say = (s = ''): void => {
    if (!opts.json) process.stdout.write(`${s}\n`);
  };
  const t0 = performance.now();
  const dir = mkdtempSync(join(tmpdir(), 'luo-fleet-demo-'));
  const children: ChildProcess[] = [];
  let store: FleetStore | undefined;
  let dashboard: { feed: FleetFeed; server: DashboardServer } | undefined;
  const onSignal = (): void => void cleanup().then(() => process.exit(130));
  const cleanup = async (): Promise<void> => {
    if (dashboard) {
      await dashboard.server.close();
      await dashboard.feed.stop();
    }
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    store?.close();
    await etcdDown(join(dir, 'etcd')).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    say(bold(`luo fleet demo: ${total} simulated hosts in three racks, a campaign from 7.3.4 to 7.3.5 on a local 3-member etcd`));
    const cluster = await etcdUp(join(dir, 'etcd'), 3);
    store = await FleetStore.connectWhenReady(cluster.endpoints, 302);
    say(`etcd: 3 members on ${cluster.endpoints.join(', ')}`);
    if (opts.dashboardPort !== undefined) {
      const feed = new FleetFeed(store);
      await feed.start();
      const server = await startDashboardServer({ hub: feed.hub, port: opts.dashboardPort, page: 'fleet', api: { '/api/fleet/hosts': () => feed.hosts() } });
      dashboard = { feed, server };
      if (opts.json) process.stderr.write(`${JSON.stringify({ dashboard: server.url })}\n`);
      else say(bold(`fleet dashboard: ${server.url}`));
    }
    const env = { ...process.env, LUO_ETCD: cluster.endpoints.join(',') };
    const start = (args: string[]): ChildProcess => {
      const c = spawn(process.execPath, [BIN, 'fleet', ...args], { env, stdio: 'ignore' });
      children.push(c);
      return c;
    };
    // two runners; a few of their hosts fail on purpose (the second wave's threshold trips on them)
    const half = Math.floor(total / 2);
    const w2 = Math.ceil(total * 0.1) + 1;
    const failing = [`east-${String(w2 - 1).padStart(4, '0')}=fell-back`, `east-${String(w2 + 1).padStart(4, '0')}=refused`];
    start(['host', '--id', 'east', '--count', String(half), '--racks', '3', '--fail', failing.join(',')]);
    start(['host', '--id', 'west', '--count', String(total - half), '--racks', '3']);
    const controllers = new Map<string, ChildProcess>([['ctl-a', start(['controller', '--id', 'ctl-a'])]]);
    await waitFor(async () => (await store!.get(keys.leader()))?.value === 'ctl-a');
    controllers.set('ctl-b', start(['controller', '--id', 'ctl-b']));
    say(`two host runners, a controller (ctl-a, leading) and a standby (ctl-b)`);
    await waitFor(async () => (await store!.range(keys.hosts())).kvs.length >= total);
    say(`${total} hosts registered`);
    const file = join(dir, 'campaign.yaml');
    writeFileSync(file, [
      `name: ${CAMPAIGN}`,
      'target: "7.3.5"',
      'waves:',
      '  - { name: canary, hosts: 1, maxConcurrent: 1 }',
      '  - { name: early, percent: 10, maxConcurrent: 10, maxFailures: 0 }',
      '  - { name: half, percent: 40, maxConcurrent: 25, maxFailures: 2 }',
      '  - { name: rest, maxConcurrent: 50, maxFailurePct: 5 }',
      'policy: { blackoutSlo: 5s, hostTimeout: 2m }',
    ].join('\n'));
    const created = await runLuo(env, ['campaign', 'create', file]);
    if (created.code !== 0) throw new Error(`campaign create: ${created.stderr}`);
    say(created.stdout.trimEnd());
    const pauses: string[] = [];
    const leaders: string[] = ['ctl-a'];
    let killed = false;
    let last = '';
    for (;;) {
      const s = (await campaignStatus(store, CAMPAIGN))!;
      const done = s.results.length;
      const line = `${s.state.phase.padEnd(7)} wave ${s.state.wave} ${s.waves[s.state.wave]?.name ?? ''}: ${done}/${total} hosts have a result${s.blackoutMs ? `, blackout p50 ${s.blackoutMs.p50.toFixed(1)} ms` : ''}`;
      if (line !== last) {
        say(dim(`  ${line}`));
        last = line;
      }
      const leader = (await store.get(keys.leader()))?.value;
      if (leader && leader !== leaders[leaders.length - 1]) {
        leaders.push(leader);
        say(green(`  ${leader} took over the lead`));
      }
      if (s.state.phase === 'paused') {
        pauses.push(s.state.reason ?? '');
        say(yellow(`  paused: ${s.state.reason}`));
        say('  the operator looks at the failed hosts, then: luo fleet campaign resume');
        const r = await runLuo(env, ['campaign', 'resume', CAMPAIGN]);
        if (r.code !== 0) throw new Error(`campaign resume: ${r.stderr}`);
        await waitFor(async () => (await campaignStatus(store!, CAMPAIGN))!.state.phase !== 'paused');
        continue;
      }
      if (!killed && done >= total / 2) {
        killed = true;
        const name = (await store.get(keys.leader()))?.value ?? 'ctl-a';
        controllers.get(name)?.kill('SIGKILL');
        say(yellow(`  killed the leading controller (${name}) with SIGKILL`));
      }
      if (s.state.phase === 'done' || s.state.phase === 'aborted') break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const s = (await campaignStatus(store, CAMPAIGN))!;
    const summary: FleetDemoSummary = { hosts: total, phase: s.state.phase, waves: s.waves, blackoutMs: s.blackoutMs, pauses, leaders, elapsedMs: Math.round(performance.now() - t0) };
    if (opts.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else {
      say();
      say(bold(`campaign ${CAMPAIGN}: ${s.state.phase}`));
      for (const [i, w] of s.waves.entries()) {
        const c = w.counts;
        say(`  wave ${i} ${w.name.padEnd(7)} ${String(w.hosts).padStart(5)} hosts: ${c['updated'] ?? 0} updated, ${c['fell-back'] ?? 0} fell back, ${c['timed-out'] ?? 0} timed out, ${c['refused'] ?? 0} refused`);
      }
      if (s.blackoutMs) say(`  blackout p50 ${s.blackoutMs.p50.toFixed(1)} ms, p99 ${s.blackoutMs.p99.toFixed(1)} ms, max ${s.blackoutMs.max.toFixed(1)} ms`);
      say(`  leaders: ${leaders.join(' -> ')}; pauses: ${pauses.length}; ${(summary.elapsedMs / 1000).toFixed(1)} s in all`);
    }
    if (dashboard) {
      if (opts.json) process.stderr.write(`${JSON.stringify({ waiting: 'SIGINT or SIGTERM ends the demo' })}\n`);
      say(dim(`the dashboard stays at ${dashboard.server.url}: press Ctrl-C to end the demo and remove everything it started`));
      await new Promise<void>((resolve) => {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    }
    return s.state.phase === 'done' ? 0 : 1;
  } catch (e) {
    process.stderr.write(`luo fleet demo: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await cleanup();
  }
}

/** Polls `cond` until it holds (no deadline: a slow machine only makes it slower). */
async function waitFor(cond: () => Promise<boolean>): Promise<void> {
  while (!(await cond())) await new Promise((r) => setTimeout(r, 100));
}

function runLuo(env: NodeJS.ProcessEnv, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [BIN, 'fleet', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    c.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    c.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
