/**
 * The fleet at scale (`npm run bench -- fleet`): ONE campaign over 100, 1 000 and 10 000 simulated
 * hosts (LUO_BENCH_FLEET_SIZES=100,1000 to choose), each size on a fresh local 3-member etcd with two
 * host runners and a controller as separate processes (`luo fleet host`, `luo fleet controller`),
 * exactly as an operator runs them. The campaign: a canary, then waves of up to 100 hosts in flight.
 * Every host's update is a real simulated live update of a host with a 1 MiB VM.
 *
 * Printed per size: hosts per minute; controller CPU per host; etcd requests and bytes per host
 * updated (all members' gRPC counters) and per idle host per minute (a 10 s idle window before the
 * campaign); etcd keys and database size at the end; runner RSS per host, idle (above an empty
 * runner's) and at its peak while updating; and the campaign's wall time as a ratio of two floors
 * measured in the same run: the issue's floor (hosts / maxConcurrent x one host's update time, as
 * if every host updated on its own CPU) and the CPU floor of this machine (hosts x one update's time
 * / cores: the simulated updates share its cores); and how many hosts were in flight on average
 * (slots held, sampled): maxConcurrent over that is the campaign's wall time over hosts /
 * maxConcurrent x the time a host was in flight here (Little's law). Then the scaling exponents.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { etcdDown, etcdUp, type LocalCluster } from '../src/fleet/etcd-local.ts';
import { type CampaignState, keys, ROOT } from '../src/fleet/keys.ts';
import { SimHost } from '../src/fleet/runner.ts';
import { FleetStore } from '../src/fleet/store.ts';
import { median } from './stats.ts';

const BIN = fileURLToPath(new URL('../bin/luo.mjs', import.meta.url));
const MAX_CONCURRENT = 100;
const IDLE_WINDOW_MS = 10_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** utime + stime of a process, in ms (/proc/PID/stat, clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) * 10;
}

/** A field of /proc/PID/status in bytes (VmRSS, VmHWM). */
function vm(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}

interface EtcdCounters {
  requests: number;
  bytes: number;
  dbBytes: number;
}

/** gRPC messages received and bytes moved, summed over the members; the largest database. */
async function etcdCounters(cluster: LocalCluster): Promise<EtcdCounters> {
  const out: EtcdCounters = { requests: 0, bytes: 0, dbBytes: 0 };
  for (const m of cluster.members) {
    const text = await (await fetch(`${m.clientUrl}/metrics`)).text();
    for (const line of text.split('\n')) {
      const [name, v] = [line.slice(0, line.lastIndexOf(' ')), Number(line.slice(line.lastIndexOf(' ') + 1))];
      if (name.startsWith('grpc_server_msg_received_total{')) out.requests += v;
      else if (name === 'etcd_network_client_grpc_received_bytes_total' || name === 'etcd_network_client_grpc_sent_bytes_total') out.bytes += v;
      else if (name === 'etcd_mvcc_db_total_size_in_bytes') out.dbBytes = Math.max(out.dbBytes, v);
    }
  }
  return out;
}

/** 21 live updates of one host each (boot of the compact host included) in this process, after 5 to warm up. */
async function hostUpdateTimes(): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < 26; i++) {
    const h = new SimHost(`probe-${i}`, '7.3.4');
    const t = performance.now();
    const r = await h.update('7.3.5', undefined);
    if (i >= 5) times.push(performance.now() - t);
    if (r.outcome !== 'updated') throw new Error(`probe host: ${r.outcome} ${r.reason ?? ''}`);
  }
  return times;
}


interface SizeResult {
  hosts: number;
  wallMs: number;
  hostMs: number;
  controllerCpuMs: number;
  etcdCpuMs: number;
  runnerCpuMs: number;
  requests: number;
  bytes: number;
  idleRequestsPerHostMin: number;
  idleBytesPerHostMin: number;
  keys: number;
  dbBytes: number;
  idleRssPerHost: number;
  peakRssPerHost: number;
  meanInFlight: number;
}

async function runSize(n: number): Promise<SizeResult> {
  const dir = mkdtempSync(join(tmpdir(), 'luo-bench-fleet-'));
  const children: ChildProcess[] = [];
  let store: FleetStore | undefined;
  try {
    const cluster = await etcdUp(join(dir, 'etcd'), 3);
    store = await FleetStore.connectWhenReady(cluster.endpoints, 300);
    const env = { ...process.env, LUO_ETCD: cluster.endpoints.join(',') };
    const start = (args: string[]): ChildProcess => {
      const c = spawn(process.execPath, [BIN, 'fleet', ...args], { env, stdio: ['ignore', 'ignore', 'inherit'] });
      children.push(c);
      return c;
    };
    // a runner or controller that exits on its own ends the bench (it would wait forever)
    const checkChildren = (): void => {
      const gone = children.find((c) => c.exitCode !== null && c.signalCode === null && c !== children[0]);
      if (gone) throw new Error(`luo fleet ${gone.spawnargs.slice(3).join(' ')} exited with status ${gone.exitCode}`);
    };
    const count = (prefix: string): Promise<number> => {
      checkChildren();
      return store!.count(prefix);
    };
    // an empty runner's RSS: what a runner costs before its hosts
    const empty = start(['host', '--id', 'empty', '--count', '1']);
    while ((await count(keys.hosts())) < 1) await sleep(100);
    const emptyRss = vm(empty.pid!, 'VmRSS');
    empty.kill('SIGTERM');
    while ((await count(keys.hosts())) > 0) await sleep(100);

    const half = Math.ceil(n / 2);
    const runners = [start(['host', '--id', 'a', '--count', String(half), '--ttl', '10']), start(['host', '--id', 'b', '--count', String(n - half), '--ttl', '10'])];
    const controller = start(['controller', '--id', 'ctl']);
    while ((await count(keys.hosts())) < n) await sleep(250);
    while (!(await store.get(keys.leader()))) await sleep(100);

    // idle: hosts registered, nothing to do
    const idle0 = await etcdCounters(cluster);
    await sleep(IDLE_WINDOW_MS);
    const idle1 = await etcdCounters(cluster);
    const idleMin = IDLE_WINDOW_MS / 60_000;
    const idleRss = runners.reduce((s, r) => s + vm(r.pid!, 'VmRSS') - emptyRss, 0);

    const file = join(dir, 'campaign.yaml');
    writeFileSync(file, [
      'name: bench',
      'target: "7.3.5"',
      'waves:',
      '  - { name: canary, hosts: 1, maxConcurrent: 1 }',
      `  - { name: rest, maxConcurrent: ${MAX_CONCURRENT}, maxFailures: 0 }`,
      'policy: { hostTimeout: 30m }',
    ].join('\n'));
    // one host's update: measured before and after the campaign (the machine's pace drifts), median of both
    const probes = await hostUpdateTimes();
    const before = await etcdCounters(cluster);
    const cpu0 = cpuMs(controller.pid!);
    const etcdCpu = (): number => cluster.members.reduce((t, m) => t + cpuMs(m.pid), 0);
    const runnerCpu = (): number => runners.reduce((t, r) => t + cpuMs(r.pid!), 0);
    const etcd0 = etcdCpu();
    const run0 = runnerCpu();
    const t0 = performance.now();
    const created = spawn(process.execPath, [BIN, 'fleet', 'campaign', 'create', file], { env, stdio: ['ignore', 'ignore', 'inherit'] });
    if ((await new Promise<number | null>((r) => created.once('exit', r))) !== 0) throw new Error('campaign create failed');
    let peak = 0;
    // hosts in flight (slots held), sampled as the campaign runs: how much of maxConcurrent it keeps busy
    const inFlight: number[] = [];
    for (;;) {
      checkChildren();
      peak = Math.max(peak, runners.reduce((s, r) => s + vm(r.pid!, 'VmRSS') - emptyRss, 0));
      inFlight.push(await store.count(keys.slots('bench')));
      const st = await store.get(keys.state('bench'));
      const phase = st ? (JSON.parse(st.value) as CampaignState).phase : 'running';
      if (phase !== 'running') {
        if (phase !== 'done') throw new Error(`campaign ended ${phase}: ${st?.value}`);
        break;
      }
      await sleep(250);
    }
    const wallMs = performance.now() - t0;
    const after = await etcdCounters(cluster);
    const hostMs = median([...probes, ...(await hostUpdateTimes())]);
    return {
      hosts: n, wallMs, hostMs, controllerCpuMs: cpuMs(controller.pid!) - cpu0, etcdCpuMs: etcdCpu() - etcd0, runnerCpuMs: runnerCpu() - run0,
      requests: after.requests - before.requests, bytes: after.bytes - before.bytes,
      idleRequestsPerHostMin: (idle1.requests - idle0.requests) / n / idleMin, idleBytesPerHostMin: (idle1.bytes - idle0.bytes) / n / idleMin,
      keys: await count(ROOT), dbBytes: after.dbBytes, idleRssPerHost: idleRss / n, peakRssPerHost: peak / n,
      meanInFlight: inFlight.reduce((a, b) => a + b, 0) / Math.max(1, inFlight.length),
    };
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    store?.close();
    await etcdDown(join(dir, 'etcd')).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

const kib = (b: number): string => `${(b / 1024).toFixed(1)} KiB`;

function exponent(rs: readonly SizeResult[], f: (r: SizeResult) => number): string {
  if (rs.length < 2) return '';
  const a = rs[0]!;
  const b = rs[rs.length - 1]!;
  return `   exponent ${(Math.log(f(b) / f(a)) / Math.log(b.hosts / a.hosts)).toFixed(2)} (${a.hosts} -> ${b.hosts})`;
}

export async function runFleetBench(): Promise<void> {
  const sizes = (process.env['LUO_BENCH_FLEET_SIZES'] ?? '100,1000,10000').split(',').map(Number);
  const cores = availableParallelism();
  const rs: SizeResult[] = [];
  for (const n of sizes) {
    const r = await runSize(n);
    rs.push(r);
    const floor = (n / MAX_CONCURRENT) * r.hostMs;
    const cpuFloor = (n * r.hostMs) / cores;
    console.log(`fleet: ${n} hosts, maxConcurrent ${MAX_CONCURRENT}, one host's update ${r.hostMs.toFixed(1)} ms (median of 42, before and after the campaign)`);
    console.log(`fleet:   campaign ${(r.wallMs / 1000).toFixed(1)} s = ${(n / (r.wallMs / 60_000)).toFixed(0)} hosts/min; ${(r.wallMs / floor).toFixed(2)}x the floor hosts/maxConcurrent x update (${(floor / 1000).toFixed(2)} s), ${(r.wallMs / cpuFloor).toFixed(2)}x the CPU floor hosts x update / ${cores} cores (${(cpuFloor / 1000).toFixed(2)} s)`);
    // Little's law: wall = hosts x time in flight / hosts in flight, so keeping maxConcurrent busy is
    // wall = hosts / maxConcurrent x time in flight (the issue's floor, with the time a host's update
    // takes while 100 share this machine's cores)
    console.log(`fleet:   hosts in flight: ${r.meanInFlight.toFixed(1)} of ${MAX_CONCURRENT} on average (${((100 * r.meanInFlight) / MAX_CONCURRENT).toFixed(0)}%): the campaign takes ${(MAX_CONCURRENT / Math.max(r.meanInFlight, 0.1)).toFixed(2)}x hosts / maxConcurrent x the time a host was in flight`);
    console.log(`fleet:   CPU during the campaign: runners ${(r.runnerCpuMs / 1000).toFixed(1)} s, etcd (3 members) ${(r.etcdCpuMs / 1000).toFixed(1)} s, controller ${(r.controllerCpuMs / 1000).toFixed(1)} s, of ${((r.wallMs * cores) / 1000).toFixed(1)} s the cores had`);
    console.log(`fleet:   controller CPU ${(r.controllerCpuMs / n).toFixed(2)} ms per host; etcd ${(r.requests / n).toFixed(1)} requests and ${kib(r.bytes / n)} per host updated`);
    console.log(`fleet:   idle: ${r.idleRequestsPerHostMin.toFixed(3)} etcd requests and ${r.idleBytesPerHostMin.toFixed(1)} bytes per host per minute; runner RSS ${r.idleRssPerHost > 0 ? kib(r.idleRssPerHost) : 'within the noise'} per idle host, ${kib(r.peakRssPerHost)} per host at the peak while updating`);
    console.log(`fleet:   etcd at the end: ${r.keys} keys, database ${(r.dbBytes / 2 ** 20).toFixed(1)} MiB`);
  }
  if (rs.length > 1) {
    console.log(`fleet: scaling over ${rs.map((r) => r.hosts).join(', ')} hosts:`);
    console.log(`fleet:   campaign wall time ${rs.map((r) => `${(r.wallMs / 1000).toFixed(1)} s`).join(', ')}${exponent(rs, (r) => r.wallMs)}`);
    console.log(`fleet:   controller CPU ${rs.map((r) => `${(r.controllerCpuMs / 1000).toFixed(2)} s`).join(', ')}${exponent(rs, (r) => Math.max(r.controllerCpuMs, 10))}`);
    console.log(`fleet:   etcd requests ${rs.map((r) => r.requests).join(', ')}${exponent(rs, (r) => r.requests)}`);
    console.log(`fleet:   etcd bytes ${rs.map((r) => kib(r.bytes)).join(', ')}${exponent(rs, (r) => r.bytes)}`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await runFleetBench();
