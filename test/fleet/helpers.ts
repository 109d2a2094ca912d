/**
 * Fleet test helpers: a real local etcd (1 or 3 members), `luo fleet host|controller` as real child
 * processes, and an independent monitor that watches every etcd revision of the fleet's keys and
 * records any violation of the guarantees (more hosts in flight in a wave than it allows, a host
 * admitted twice, a result written twice).
 */
import { spawn, type ChildProcess, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { etcdDown, etcdUp, type LocalCluster } from '../../src/fleet/etcd-local.ts';
import { keys, ROOT } from '../../src/fleet/keys.ts';
import type { PlannedCampaign } from '../../src/fleet/campaign.ts';
import { FleetStore } from '../../src/fleet/store.ts';
import { cleanup, LUO_BIN, tempDir, until } from '../daemon/helpers.ts';

export interface Fleet {
  readonly dir: string;
  readonly cluster: LocalCluster;
  readonly store: FleetStore;
  readonly procs: Map<string, Proc>;
  start(name: string, args: string[]): Promise<Proc>;
  luo(args: string[]): { code: number | null; stdout: string; stderr: string };
  /** Writes `<name>.yaml` and runs `campaign create` on it; the CLI's answer. */
  create(name: string, yaml: string): { code: number | null; stdout: string; stderr: string };
  stop(): Promise<void>;
}

export interface Proc {
  readonly child: ChildProcess;
  out: string;
  readonly exited: Promise<number | null>;
}

export async function startFleet(tag: string, members: 1 | 3 = 1, etcdArgs: readonly string[] = []): Promise<Fleet> {
  const dir = tempDir(`fleet-${tag}`);
  const cluster = await etcdUp(join(dir, 'etcd'), members, { extraArgs: etcdArgs });
  let store: FleetStore | undefined;
  await until(async () => {
    try {
      store = await FleetStore.connect(cluster.endpoints);
      return true;
    } catch {
      return false;
    }
  }, 'etcd to answer');
  const env = { ...process.env, LUO_ETCD: cluster.endpoints.join(','), NO_COLOR: '1' };
  const procs = new Map<string, Proc>();
  const luo = (args: string[]) => {
    const r = spawnSync(process.execPath, [LUO_BIN, 'fleet', ...args], { env, encoding: 'utf8' });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  return {
    dir, cluster, store: store!, procs,
    async start(name, args) {
      const child = spawn(process.execPath, [LUO_BIN, 'fleet', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      const p: Proc = { child, out: '', exited: new Promise((r) => child.once('exit', (code) => r(code))) };
      child.stdout!.on('data', (b: Buffer) => (p.out += b.toString()));
      child.stderr!.on('data', (b: Buffer) => (p.out += b.toString()));
      procs.set(name, p);
      return p;
    },
    luo,
    create(name, yaml) {
      const file = join(dir, `${name}.yaml`);
      writeFileSync(file, yaml);
      return luo(['campaign', 'create', file]);
    },
    async stop() {
      for (const p of procs.values()) p.child.kill('SIGKILL');
      store?.close();
      await etcdDown(join(dir, 'etcd')).catch(() => undefined);
      await cleanup(dir);
    },
  };
}

/** Waits until `n` hosts are registered. */
export async function hostsPresent(f: Fleet, n: number): Promise<void> {
  await until(async () => (await f.store.range(keys.hosts())).kvs.length >= n, `${n} hosts to register`);
}

export interface Monitor {
  readonly violations: string[];
  /** The most hosts seen in flight at once, per campaign and wave ("c/w"). */
  readonly peak: Map<string, number>;
  stop(): Promise<void>;
}

/** Watches every revision from 1: slots per wave, admissions, results. */
export async function monitor(store: FleetStore): Promise<Monitor> {
  const violations: string[] = [];
  const peak = new Map<string, number>();
  const live = new Map<string, Set<string>>();
  const admitted = new Set<string>();
  const results = new Set<string>();
  const limits = new Map<string, readonly number[]>();
  /** slot key -> host, across campaigns: a host must never hold two slots at once. */
  const slotHost = new Map<string, string>();
  const stop = await store.watch(ROOT, 0n, (e) => {
    const k = e.kv.key;
    const m = /^luo\/fleet\/campaigns\/([^/]+)\/(spec|slots\/(\d+)\/(\d+)|admitted\/(.+)|results\/(.+))$/.exec(k);
    if (!m) return;
    const c = m[1]!;
    if (m[2] === 'spec' && e.type === 'put') limits.set(c, (JSON.parse(e.kv.value) as PlannedCampaign).waves.map((w) => w.maxConcurrent));
    else if (m[3] !== undefined) {
      const w = `${c}/${m[3]}`;
      const set = live.get(w) ?? new Set<string>();
      live.set(w, set);
      if (e.type === 'put') {
        set.add(m[4]!);
        const host = (JSON.parse(e.kv.value) as { host: string }).host;
        if ([...slotHost.values()].includes(host)) violations.push(`revision ${e.kv.modRevision}: ${host} is in flight twice (${k})`);
        slotHost.set(k, host);
      } else {
        set.delete(m[4]!);
        slotHost.delete(k);
      }
      peak.set(w, Math.max(peak.get(w) ?? 0, set.size));
      const max = limits.get(c)?.[Number(m[3])];
      if (max !== undefined && set.size > max) violations.push(`revision ${e.kv.modRevision}: ${set.size} hosts in flight in ${w}, max ${max}`);
    } else if (m[5] !== undefined && e.type === 'put') {
      if (admitted.has(`${c}/${m[5]}`)) violations.push(`revision ${e.kv.modRevision}: ${m[5]} admitted again in ${c}`);
      admitted.add(`${c}/${m[5]}`);
    } else if (m[6] !== undefined && e.type === 'put') {
      if (results.has(`${c}/${m[6]}`)) violations.push(`revision ${e.kv.modRevision}: a second result for ${m[6]} in ${c}`);
      results.add(`${c}/${m[6]}`);
    }
  });
  return { violations, peak, stop };
}

export async function campaignPhase(store: FleetStore, c: string): Promise<{ phase: string; reason?: string; wave: number } | undefined> {
  const kv = await store.get(keys.state(c));
  return kv ? (JSON.parse(kv.value) as { phase: string; reason?: string; wave: number }) : undefined;
}

/** Waits for `phase`; a campaign that stops elsewhere (paused while waiting for done, aborted) fails at once. */
export const waitPhase = (f: Fleet, c: string, phase: string, gone?: () => string | undefined): Promise<void> =>
  until(async () => {
    const p = await campaignPhase(f.store, c);
    if (p && p.phase !== phase && (p.phase === 'aborted' || (phase === 'done' && p.phase === 'paused'))) throw new Error(`campaign ${c} is ${p.phase} (${p.reason ?? ''}), not ${phase}`);
    return p?.phase === phase;
  }, `campaign ${c} to be ${phase}`, gone);
