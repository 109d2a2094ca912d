/**
 * `luo dashboard`: a web page (loopback by default) showing a machine live — the physical memory
 * map to scale, sessions and files, the KHO tree, and a timeline of live updates with their
 * blackout phases. Sources: `--demo` runs the demo's live updates in this process; `--socket PATH`
 * (or the default socket) watches a running `luo serve` through STATUS.
 */
import { bold, dim } from './style.ts';
import { DaemonFeed } from '../web/daemon-feed.ts';
import { MachineFeed, type DashboardServer, SnapshotHub, startDashboardServer } from '../web/server.ts';
import { defaultSocketPath } from '../daemon/wire.ts';
import { LuoDaemon } from '../daemon/server.ts';

export interface DashboardOptions {
  demo?: boolean;
  fleet?: boolean;
  etcd?: string;
  socket?: string;
  port?: string;
  host?: string;
  updates?: string;
  pace?: string;
  interval?: string;
  exitWhenDone?: boolean;
  json?: boolean;
}

export const DEFAULT_PORT = 7373;


function intOpt(v: string | undefined, name: string, dflt: number, min: number, max: number): number {
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v.trim()) || Number(v) < min || Number(v) > max) throw new Error(`${name} must be an integer from ${min} to ${max}, not "${v}"`);
  return Number(v);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runDashboard(opts: DashboardOptions): Promise<number> {
  const err = (msg: string, code = 1): number => {
    process.stderr.write(`luo dashboard: ${msg}\n`);
    return code;
  };
  let port: number, updates: number, pace: number, interval: number;
  try {
    port = intOpt(opts.port, '--port', DEFAULT_PORT, 0, 65535);
    updates = intOpt(opts.updates, '--updates', 3, 1, 100);
    pace = intOpt(opts.pace, '--pace', 1500, 0, 600000);
    interval = intOpt(opts.interval, '--interval', 500, 50, 60000);
  } catch (e) {
    return err(`${(e as Error).message} (see luo dashboard --help)`, 2);
  }
  if ([opts.demo, opts.socket !== undefined, opts.fleet].filter(Boolean).length > 1) return err('choose one source: --demo, --socket PATH or --fleet', 2);
  if (opts.etcd !== undefined && !opts.fleet) return err('--etcd goes with --fleet', 2);
  const host = opts.host ?? '127.0.0.1';
  if (opts.fleet) return runFleetDashboard(opts, host, port, err);

  const hub = new SnapshotHub({ source: { kind: opts.demo ? 'demo' : 'daemon', label: 'starting' }, status: 'starting', done: false, error: null, machine: null, timeline: [], daemon: null });
  let feed: DaemonFeed | undefined;
  if (!opts.demo) {
    const socket = opts.socket ?? defaultSocketPath();
    if (!(await LuoDaemon.alive(socket))) {
      return err(`no luo daemon answers on ${socket}: start one with \`luo serve${opts.socket ? ` --socket ${socket}` : ''}\`, pass --socket PATH, or use --demo to watch the built-in demo`);
    }
    feed = new DaemonFeed(hub, socket, interval);
    try {
      await feed.start();
    } catch (e) {
      return err(`cannot read the daemon's status on ${socket}: ${(e as Error).message}`);
    }
  }

  let server: DashboardServer;
  try {
    server = await startDashboardServer({ hub, host, port });
  } catch (e) {
    await feed?.stop();
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') return err(`port ${port} on ${host} is in use: pass --port N, or --port 0 for any free port`);
    return err(`cannot listen on ${host}:${port}: ${(e as Error).message}`);
  }
  if (opts.json) process.stdout.write(`${JSON.stringify({ url: server.url, port: server.port, source: opts.demo ? 'demo' : 'daemon' })}\n`);
  else {
    process.stdout.write(`${bold('luo dashboard')} on ${bold(server.url)}\n`);
    if (!['127.0.0.1', 'localhost', '::1'].includes(host)) process.stdout.write(`warning: listening on ${host}: anyone who can reach it sees the machine\n`);
    process.stdout.write(dim('press Ctrl-C to stop\n'));
  }

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await feed?.stop();
      await server.close();
    })());
  const stopped = new Promise<void>((resolve) => {
    const onSig = (): void => void stop().then(resolve);
    process.once('SIGINT', onSig);
    process.once('SIGTERM', onSig);
  });

  let code = 0;
  if (opts.demo) {
    const { runDemo } = await import('./demo.ts');
    let mf: MachineFeed | undefined;
    code = await runDemo({
      updates,
      quiet: true,
      onProgress: async (ev) => {
        mf ??= new MachineFeed(hub, ev.machine, { kind: 'demo', label: `luo demo: ${updates} live update(s) of a 64 GiB host with three VMs` });
        if (ev.kind === 'updated') mf.recordUpdate(ev.update, ev.phases.map(([name, ms]) => ({ name: phaseName(name), ms })), { preservedPages: ev.preservedPages, blocks: ev.blocks });
        mf.refresh({ status: ev.message, done: ev.kind === 'done', error: ev.kind === 'done' && ev.code !== 0 ? ev.problems.join('; ') : null });
        if (!opts.json && ev.kind !== 'booted') process.stdout.write(`${ev.kind === 'done' ? bold(ev.message) : ev.message}\n`);
        if (ev.kind !== 'done' && pace > 0) await sleep(ev.kind === 'kexeced' ? pace / 2 : pace);
      },
    });
    if (opts.exitWhenDone) {
      await stop();
      return code;
    }
  }
  await stopped;
  return code;
}

/** `luo dashboard --fleet`: the fleet's page, fed by a watch of its etcd keys. */
async function runFleetDashboard(opts: DashboardOptions, host: string, port: number, err: (msg: string, code?: number) => number): Promise<number> {
  const { etcdEndpoints, FleetStore } = await import('../fleet/store.ts');
  const { FleetFeed } = await import('../web/fleet-feed.ts');
  let store: import('../fleet/store.ts').FleetStore;
  try {
    store = await FleetStore.connect(etcdEndpoints(opts.etcd));
  } catch (e) {
    return err(`${(e as Error).message}`);
  }
  const feed = new FleetFeed(store);
  let server: DashboardServer;
  try {
    await feed.start();
    server = await startDashboardServer({ hub: feed.hub, host, port, page: 'fleet', api: { '/api/fleet/hosts': () => feed.hosts() } });
  } catch (e) {
    await feed.stop().catch(() => undefined);
    store.close();
    const code = (e as NodeJS.ErrnoException).code;
    return err(code === 'EADDRINUSE' ? `port ${port} on ${host} is in use: pass --port N, or --port 0 for any free port` : (e as Error).message);
  }
  if (opts.json) process.stdout.write(`${JSON.stringify({ url: server.url, port: server.port, source: 'fleet' })}\n`);
  else {
    process.stdout.write(`${bold('luo dashboard --fleet')} on ${bold(server.url)} (etcd ${store.endpoints.join(',')})\n`);
    if (!['127.0.0.1', 'localhost', '::1'].includes(host)) process.stdout.write(`warning: listening on ${host}: anyone who can reach it sees the fleet\n`);
    process.stdout.write(dim('press Ctrl-C to stop\n'));
  }
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await server.close();
  await feed.stop();
  store.close();
  return 0;
}

/** The demo's row names -> the timeline's phase names. */
function phaseName(row: string): string {
  if (row.startsWith('freeze')) return 'serialize';
  if (row.startsWith('kexec')) return 'hand-over';
  if (row.startsWith('boot')) return 'boot + KHO walk';
  if (row.startsWith('LUO restore')) return 'LUO restore';
  return row;
}
