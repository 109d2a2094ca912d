/**
 * A local etcd for trying the fleet and for tests: one member or a 3-member cluster on 127.0.0.1,
 * each a real `etcd` process (Debian's etcd-server) with its own data directory under `dir`, its
 * ports chosen free, detached so it outlives the command that started it. `cluster.json` in `dir`
 * says what runs (pids, URLs); `down` stops exactly those processes.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { LuoError } from '../errno.ts';

export interface EtcdMember {
  readonly name: string;
  readonly pid: number;
  readonly clientUrl: string;
  readonly peerUrl: string;
  readonly dataDir: string;
}

export interface LocalCluster {
  readonly dir: string;
  readonly members: readonly EtcdMember[];
  readonly endpoints: readonly string[];
}

/** A TCP port nobody listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const CLUSTER_FILE = 'cluster.json';

export function readCluster(dir: string): LocalCluster | undefined {
  const f = join(dir, CLUSTER_FILE);
  if (!existsSync(f)) return undefined;
  return JSON.parse(readFileSync(f, 'utf8')) as LocalCluster;
}

export const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Starts `members` etcd processes under `dir` (EEXIST if a cluster of this dir still runs). */
export async function etcdUp(dir: string, members: 1 | 3 = 1, opts: { etcd?: string; extraArgs?: readonly string[] } = {}): Promise<LocalCluster> {
  const old = readCluster(dir);
  if (old?.members.some((m) => alive(m.pid))) throw new LuoError('EEXIST', `an etcd cluster of ${dir} still runs (luo fleet etcd down --dir ${dir})`);
  mkdirSync(dir, { recursive: true });
  const specs: Array<{ name: string; client: number; peer: number }> = [];
  for (let i = 0; i < members; i++) specs.push({ name: `m${i}`, client: await freePort(), peer: await freePort() });
  const initial = specs.map((s) => `${s.name}=http://127.0.0.1:${s.peer}`).join(',');
  const token = `luo-${process.pid}-${Date.now()}`;
  const out: EtcdMember[] = [];
  for (const s of specs) {
    const dataDir = join(dir, s.name);
    rmSync(dataDir, { recursive: true, force: true });
    const log = openSync(join(dir, `${s.name}.log`), 'a');
    const clientUrl = `http://127.0.0.1:${s.client}`;
    const peerUrl = `http://127.0.0.1:${s.peer}`;
    const child = spawn(opts.etcd ?? 'etcd', [
      '--name', s.name, '--data-dir', dataDir,
      '--listen-client-urls', clientUrl, '--advertise-client-urls', clientUrl,
      '--listen-peer-urls', peerUrl, '--initial-advertise-peer-urls', peerUrl,
      '--initial-cluster', initial, '--initial-cluster-state', 'new', '--initial-cluster-token', token,
      // quick leader changes for a local cluster: 100 ms heartbeats, 1 s elections
      '--heartbeat-interval', '100', '--election-timeout', '1000',
      ...(opts.extraArgs ?? []),
    ], { detached: true, stdio: ['ignore', log, log] });
    const started = await new Promise<number | Error>((resolve) => {
      child.once('error', (e) => resolve(e));
      child.once('spawn', () => resolve(child.pid!));
    });
    if (started instanceof Error) {
      for (const m of out) process.kill(m.pid, 'SIGKILL');
      throw new LuoError('ENOENT', `cannot start etcd: ${started.message} (install Debian's etcd-server)`);
    }
    child.unref();
    out.push({ name: s.name, pid: started, clientUrl, peerUrl, dataDir });
  }
  const cluster: LocalCluster = { dir, members: out, endpoints: out.map((m) => m.clientUrl) };
  writeFileSync(join(dir, CLUSTER_FILE), `${JSON.stringify(cluster, null, 2)}\n`);
  return cluster;
}

/** Stops the cluster of `dir` (SIGTERM, then SIGKILL what remains); returns the pids it stopped. */
export async function etcdDown(dir: string): Promise<number[]> {
  const c = readCluster(dir);
  if (!c) throw new LuoError('ENOENT', `no local etcd cluster in ${dir}`);
  const pids = c.members.map((m) => m.pid).filter(alive);
  for (const pid of pids) process.kill(pid, 'SIGTERM');
  for (let i = 0; i < 100 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
  for (const pid of pids.filter(alive)) process.kill(pid, 'SIGKILL');
  rmSync(join(dir, CLUSTER_FILE), { force: true });
  return pids;
}
