/**
 * `luo fleet ...`: a local etcd (`etcd up|down`), host runners (`host`), the campaign controller
 * (`controller`), the registered hosts (`hosts`) and campaigns (`campaign create|list|status|pause|
 * resume|abort`). Every command but `etcd` talks to etcd at --etcd URL,... or $LUO_ETCD.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { isLuoError } from '../errno.ts';
import { FileSchemaError } from '../schema/yaml-file.ts';
import { type HostFault, HostRunner } from '../fleet/runner.ts';
import { Controller, createCampaign, setIntent } from '../fleet/controller.ts';
import { parseCampaign, planCampaign, type PlannedCampaign } from '../fleet/campaign.ts';
import { type CampaignState, type HostRecord, json, keys } from '../fleet/keys.ts';
import type { HostResult } from '../fleet/result.ts';
import { etcdEndpoints, FleetStore } from '../fleet/store.ts';
import { etcdDown, etcdUp, readCluster } from '../fleet/etcd-local.ts';
import { type CampaignStatus, summarize } from '../fleet/status.ts';
import { bold, dim, green, red, yellow } from './style.ts';

const say = (s: string): void => void process.stdout.write(`${s}\n`);
const complain = (cmd: string, e: unknown): number => {
  process.stderr.write(`luo fleet ${cmd}: ${isLuoError(e) ? `${e.detail} (${e.errno})` : e instanceof Error ? e.message : String(e)}\n`);
  return 1;
};

export const defaultEtcdDir = (): string => join(tmpdir(), `luo-etcd-${process.getuid?.() ?? 0}`);

async function connect(cmd: string, etcd: string | undefined): Promise<FleetStore | undefined> {
  try {
    return await FleetStore.connect(etcdEndpoints(etcd));
  } catch (e) {
    complain(cmd, e);
    return undefined;
  }
}

export async function runEtcdUp(opts: { members?: string; dir?: string }): Promise<number> {
  const members = Number(opts.members ?? '1');
  if (members !== 1 && members !== 3) {
    process.stderr.write('luo fleet etcd up: --members is 1 or 3\n');
    return 2;
  }
  const dir = opts.dir ?? defaultEtcdDir();
  try {
    const c = await etcdUp(dir, members);
    // ready when a member answers
    (await FleetStore.connectWhenReady(c.endpoints, 152)).close();
    say(`etcd: ${members} member(s) in ${dir}`);
    say(`export LUO_ETCD=${c.endpoints.join(',')}`);
    return 0;
  } catch (e) {
    return complain('etcd up', e);
  }
}

export async function runEtcdDown(opts: { dir?: string }): Promise<number> {
  const dir = opts.dir ?? defaultEtcdDir();
  try {
    const pids = await etcdDown(dir);
    say(`etcd: stopped ${pids.length ? pids.join(', ') : 'nothing (no member was running)'}`);
    return 0;
  } catch (e) {
    return complain('etcd down', e);
  }
}

export function runEtcdEndpoints(opts: { dir?: string }): number {
  const c = readCluster(opts.dir ?? defaultEtcdDir());
  if (!c) return complain('etcd endpoints', new Error('no local etcd (luo fleet etcd up)'));
  say(c.endpoints.join(','));
  return 0;
}

const parseLabels = (s: string | undefined): Record<string, string> =>
  Object.fromEntries((s ?? '').split(',').filter(Boolean).map((kv) => {
    const i = kv.indexOf('=');
    if (i <= 0) throw new Error(`bad label "${kv}" (expected key=value)`);
    return [kv.slice(0, i), kv.slice(i + 1)];
  }));

export async function runHost(opts: { etcd?: string; count?: string; release?: string; labels?: string; id?: string; fail?: string; updateDelayMs?: string; ttl?: string; socket?: string[]; racks?: string }): Promise<number> {
  let labels: Record<string, string>;
  let faults: Record<string, HostFault>;
  try {
    labels = parseLabels(opts.labels);
    faults = Object.fromEntries(Object.entries(parseLabels(opts.fail)).map(([h, f]) => {
      if (f !== 'refused' && f !== 'fell-back' && f !== 'slow') throw new Error(`bad --fail ${h}=${f} (refused, fell-back or slow)`);
      return [h, f as HostFault];
    }));
    for (const [flag, v, min] of [['--count', opts.count, 0], ['--ttl', opts.ttl, 1], ['--racks', opts.racks, 1], ['--update-delay-ms', opts.updateDelayMs, 0]] as const) {
      if (v !== undefined && (!/^\d+$/.test(v) || Number(v) < min || Number(v) > 1_000_000)) throw new Error(`${flag} must be an integer from ${min} to 1000000, not "${v}"`);
    }
  } catch (e) {
    process.stderr.write(`luo fleet host: ${(e as Error).message}\n`);
    return 2;
  }
  const store = await connect('host', opts.etcd);
  if (!store) return 1;
  const id = opts.id ?? `runner-${process.pid}`;
  let runner: HostRunner;
  try {
    runner = await HostRunner.start(store, {
      id, count: Number(opts.count ?? '10'), release: opts.release ?? '7.3.4', labels, faults,
      ...(opts.updateDelayMs ? { updateDelayMs: Number(opts.updateDelayMs) } : {}), ...(opts.ttl ? { ttl: Number(opts.ttl) } : {}), ...(opts.socket?.length ? { sockets: opts.socket } : {}), ...(opts.racks ? { racks: Number(opts.racks) } : {}), log: say,
    });
  } catch (e) {
    store.close();
    return complain('host', e);
  }
  return serveUntilSignal(store, () => runner.stop());
}

/** Runs until SIGTERM or SIGINT, then stops what runs and closes the store. */
async function serveUntilSignal(store: FleetStore, stop: () => Promise<void>): Promise<number> {
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  await stop();
  store.close();
  return 0;
}

export async function runController(opts: { etcd?: string; id?: string }): Promise<number> {
  const store = await connect('controller', opts.etcd);
  if (!store) return 1;
  const c = await Controller.start(store, { id: opts.id ?? `controller-${process.pid}`, log: say });
  return serveUntilSignal(store, () => c.stop());
}

export async function runHosts(opts: { etcd?: string; json?: boolean }): Promise<number> {
  const store = await connect('hosts', opts.etcd);
  if (!store) return 1;
  try {
    const hosts = (await store.range(keys.hosts())).kvs.map((kv) => json<HostRecord>(kv.value));
    if (opts.json) say(JSON.stringify(hosts, null, 2));
    else {
      say(`${hosts.length} host(s) present`);
      for (const h of hosts) say(`  ${h.id.padEnd(24)} ${h.release.padEnd(12)} ${h.state.padEnd(9)} runner ${h.runner}${Object.keys(h.labels).length ? `  ${Object.entries(h.labels).map(([k, v]) => `${k}=${v}`).join(',')}` : ''}`);
    }
    return 0;
  } catch (e) {
    return complain('hosts', e);
  } finally {
    store.close();
  }
}

export async function runCampaignCreate(file: string, opts: { etcd?: string; json?: boolean }): Promise<number> {
  let spec;
  try {
    spec = parseCampaign(readFileSync(file === '-' ? 0 : file, 'utf8'), file);
  } catch (e) {
    if (e instanceof FileSchemaError) {
      process.stderr.write(`${e.message}\n`);
      return 2;
    }
    return complain('campaign create', e);
  }
  const store = await connect('campaign create', opts.etcd);
  if (!store) return 1;
  try {
    const hosts = (await store.range(keys.hosts())).kvs.map((kv) => json<HostRecord>(kv.value));
    const planned = planCampaign(spec, hosts);
    await createCampaign(store, planned);
    if (opts.json) say(JSON.stringify(planned, null, 2));
    else {
      say(`campaign ${bold(spec.name)}: ${Object.keys(planned.from).length} host(s) to ${spec.target} in ${planned.waves.length} wave(s)`);
      for (const w of planned.waves) say(`  ${w.name.padEnd(12)} ${String(w.hosts.length).padStart(6)} host(s), ${w.maxConcurrent} at once, ${w.maxFailures} failure(s) tolerated${w.soakMs ? `, soak ${w.soakMs} ms` : ''}`);
      if (Object.keys(planned.coldBoot).length) say(yellow(`  ${Object.keys(planned.coldBoot).length} host(s) will fall back to a cold boot (policy.allowColdBoot)`));
    }
    return 0;
  } catch (e) {
    return complain('campaign create', e);
  } finally {
    store.close();
  }
}

export type { CampaignStatus };

export async function campaignStatus(store: FleetStore, c: string): Promise<CampaignStatus | undefined> {
  const { kvs } = await store.range(keys.campaign(c));
  const by = new Map(kvs.map((kv) => [kv.key, kv]));
  const spec = by.get(keys.spec(c));
  const st = by.get(keys.state(c));
  if (!spec || !st) return undefined;
  const results = kvs.filter((kv) => kv.key.startsWith(keys.results(c))).map((kv) => json<HostResult>(kv.value));
  const slots = kvs.filter((kv) => kv.key.startsWith(keys.slots(c))).map((kv) => Number(kv.key.slice(keys.slots(c).length).split('/')[0]));
  return summarize(c, json<PlannedCampaign>(spec.value), json<CampaignState>(st.value), results, slots);
}

function printStatus(s: CampaignStatus): void {
  const phase = s.state.phase === 'done' ? green('done') : s.state.phase === 'running' ? 'running' : s.state.phase === 'paused' ? yellow('paused') : red('aborted');
  say(`campaign ${bold(s.name)} -> ${s.target}: ${phase}${s.state.reason ? ` (${s.state.reason})` : ''}${s.state.phase === 'running' && !s.windowOpen ? dim(' — outside its maintenance windows: admitting nobody') : ''}`);
  s.waves.forEach((w, i) => {
    const parts = Object.entries(w.counts).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`);
    say(`  ${i === s.state.wave && s.state.phase === 'running' ? '>' : ' '} wave ${i} ${w.name.padEnd(12)} ${String(w.hosts).padStart(6)} host(s): ${parts.join(', ')}${w.inFlight ? `, ${w.inFlight} in flight` : ''}`);
  });
  if (s.blackoutMs) say(dim(`  blackout p50 ${s.blackoutMs.p50.toFixed(1)} ms, p99 ${s.blackoutMs.p99.toFixed(1)} ms, max ${s.blackoutMs.max.toFixed(1)} ms`));
}

/** `--watch` in a terminal: a bar per wave (hosts with a result out of the wave's hosts) and the phase. */
async function watchWithBars(store: FleetStore, c: string): Promise<number> {
  const { MultiBar, Presets } = (await import('cli-progress')).default;
  const multi = new MultiBar({ format: ' {name} [{bar}] {value}/{total} {detail}', hideCursor: true, clearOnComplete: false, stopOnComplete: false, autopadding: true }, Presets.shades_classic);
  const header = multi.create(1, 0, { name: c, detail: '' }, { format: ' {name}: {detail}' });
  const bars: ReturnType<typeof multi.create>[] = [];
  try {
    for (;;) {
      const s = await campaignStatus(store, c);
      if (!s) throw new Error(`no campaign named "${c}"`);
      header.update(0, { name: `${s.name} -> ${s.target}`, detail: `${s.state.phase}${s.state.reason ? ` (${s.state.reason})` : ''}${s.blackoutMs ? `, blackout p50 ${s.blackoutMs.p50.toFixed(1)} ms, p99 ${s.blackoutMs.p99.toFixed(1)} ms` : ''}` });
      s.waves.forEach((w, i) => {
        const done = w.hosts - (w.counts['pending'] ?? 0) - w.inFlight;
        const detail = Object.entries(w.counts).filter(([k, n]) => n > 0 && k !== 'pending').map(([k, n]) => `${n} ${k}`).concat(w.inFlight ? [`${w.inFlight} in flight`] : []).join(', ');
        const name = `wave ${i} ${w.name}`.padEnd(18);
        if (!bars[i]) bars[i] = multi.create(w.hosts, done, { name, detail });
        else bars[i]!.update(done, { name, detail });
      });
      if (s.state.phase === 'done' || s.state.phase === 'aborted') return s.state.phase === 'done' ? 0 : 1;
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    multi.stop();
  }
}

export async function runCampaignStatus(c: string, opts: { etcd?: string; json?: boolean; watch?: boolean }): Promise<number> {
  const store = await connect('campaign status', opts.etcd);
  if (!store) return 1;
  if (opts.watch && !opts.json && process.stdout.isTTY) {
    try {
      return await watchWithBars(store, c);
    } catch (e) {
      return complain('campaign status', e);
    } finally {
      store.close();
    }
  }
  try {
    for (let last = '';;) {
      const s = await campaignStatus(store, c);
      if (!s) return complain('campaign status', new Error(`no campaign named "${c}"`));
      const text = JSON.stringify({ ...s, results: opts.json ? s.results : s.results.length });
      if (text !== last) {
        if (opts.json) say(JSON.stringify(s));
        else printStatus(s);
        last = text;
      }
      if (!opts.watch || s.state.phase === 'done' || s.state.phase === 'aborted') return s.state.phase === 'done' || !opts.watch ? 0 : 1;
      await new Promise((r) => setTimeout(r, 250));
    }
  } catch (e) {
    return complain('campaign status', e);
  } finally {
    store.close();
  }
}

export async function runCampaignList(opts: { etcd?: string; json?: boolean }): Promise<number> {
  const store = await connect('campaign list', opts.etcd);
  if (!store) return 1;
  try {
    const { kvs } = await store.range(keys.campaigns());
    const names = kvs.filter((kv) => kv.key.endsWith('/spec')).map((kv) => kv.key.slice(keys.campaigns().length, -'/spec'.length));
    const all = [];
    for (const n of names) {
      const s = await campaignStatus(store, n);
      if (s) all.push(s);
    }
    if (opts.json) say(JSON.stringify(all.map((s) => ({ name: s.name, target: s.target, phase: s.state.phase, wave: s.state.wave, reason: s.state.reason ?? null }))));
    else for (const s of all) say(`${s.name.padEnd(24)} -> ${s.target.padEnd(12)} ${s.state.phase}${s.state.reason ? ` (${s.state.reason})` : ''}`);
    return 0;
  } catch (e) {
    return complain('campaign list', e);
  } finally {
    store.close();
  }
}

export async function runCampaignIntent(c: string, action: 'pause' | 'resume' | 'abort', opts: { etcd?: string }): Promise<number> {
  const store = await connect(`campaign ${action}`, opts.etcd);
  if (!store) return 1;
  try {
    await setIntent(store, c, action, `${process.env['USER'] ?? 'operator'}@${process.pid}`);
    say(`campaign ${c}: ${action} requested; the leading controller applies it at its next reconcile`);
    return 0;
  } catch (e) {
    return complain(`campaign ${action}`, e);
  } finally {
    store.close();
  }
}
