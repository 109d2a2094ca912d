/**
 * The dashboard's web server: Node's http module only. It serves the page (src/web/static/), the
 * latest snapshot as JSON (`GET /api/snapshot`) and every new snapshot as Server-Sent Events
 * (`GET /api/events`, event `snapshot`). Snapshots are published by a feed: an in-process machine
 * (MachineFeed: `luo dashboard --demo`, tests) or a running daemon polled through STATUS
 * (DaemonFeed: `luo dashboard --socket PATH`).
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Machine } from '../kernel/machine.ts';
import { machineView, type MachineView } from './view.ts';

export interface TimelinePhase {
  name: string;
  ms: number;
}

/** One live update as the dashboard saw it: the blackout, phase by phase. */
export interface TimelineEntry {
  /** liveupdate_num of the kernel the update booted. */
  n: number;
  label: string;
  phases: TimelinePhase[];
  totalMs: number;
  preservedPages: number | null;
  blocks: number | null;
  /** The release the update came from, when known. */
  from: string | null;
  /** All phases known (the demo reports restore, retrieve and finish too). */
  complete: boolean;
}

export interface Snapshot {
  seq: number;
  time: string;
  source: { kind: 'demo' | 'machine' | 'daemon'; label: string };
  /** What is happening now, in words. */
  status: string;
  /** The source has finished (the demo ended) — the page stops showing "live". */
  done: boolean;
  error: string | null;
  machine: MachineView | null;
  timeline: TimelineEntry[];
  /** Daemon sources: pid, generation, clients. */
  daemon: { pid: number; generation: string; socket: string; processes: number; connections: number; held: string[] } | null;
}

/** The phases of a blackout, in order (names shared with the page's colours). */
export const PHASES = ['serialize', 'hand-over', 'boot + KHO walk', 'LUO restore', 'retrieve', 'finish'] as const;

type SnapshotInit = Omit<Snapshot, 'seq' | 'time'>;

/** A published snapshot: its body with a sequence number and the time it was published. */
export type Stamped<B> = B & { seq: number; time: string };

/** Holds the latest snapshot and tells subscribers about each new one. */
export class Hub<B extends object> {
  private latest: Stamped<B>;
  private seq = 0;
  private readonly subs = new Set<(s: Stamped<B>) => void>();

  constructor(init: B) {
    this.latest = { ...init, seq: 0, time: new Date().toISOString() };
  }

  get current(): Stamped<B> {
    return this.latest;
  }

  publish(s: B): Stamped<B> {
    this.latest = { ...s, seq: ++this.seq, time: new Date().toISOString() };
    for (const f of this.subs) f(this.latest);
    return this.latest;
  }

  /** Changes a few fields of the latest snapshot and republishes it. */
  patch(p: Partial<B>): Stamped<B> {
    const { seq: _s, time: _t, ...rest } = this.latest;
    return this.publish({ ...(rest as unknown as B), ...p });
  }

  subscribe(f: (s: Stamped<B>) => void): () => void {
    this.subs.add(f);
    return () => this.subs.delete(f);
  }
}

/** What the server needs of a hub (any body). */
export interface SnapshotSource {
  readonly current: Stamped<object>;
  subscribe(f: (s: Stamped<object>) => void): () => void;
}

/** The machine dashboard's hub. */
export class SnapshotHub extends Hub<SnapshotInit> {}

const sum = (p: TimelinePhase[]): number => p.reduce((a, x) => a + x.ms, 0);

/**
 * An in-process machine. `refresh()` publishes its current state; a kexec since the last refresh
 * adds a timeline entry from the new kernel's kexecStats (serialize, hand-over, boot), which
 * `recordUpdate` may later complete with the phases the caller measured.
 */
export class MachineFeed {
  private lastKernel: unknown;
  private readonly timeline: TimelineEntry[] = [];
  private status = 'running';
  private done = false;
  private error: string | null = null;

  constructor(readonly hub: SnapshotHub, readonly machine: Machine, private readonly source: Snapshot['source'] = { kind: 'machine', label: 'in-process machine' }) {
    this.lastKernel = machine.kernel;
  }

  private noteKexec(): void {
    const k = this.machine.kernel;
    if (k === this.lastKernel) return;
    const prev = this.lastKernel as { build?: { release: string } } | undefined;
    this.lastKernel = k;
    const st = k.kexecStats;
    if (!st) return;
    const n = k.luo?.incomingNum ?? this.timeline.length + 1;
    const phases = [
      { name: 'serialize', ms: st.serializeMs },
      { name: 'hand-over', ms: st.handoverMs },
      { name: 'boot + KHO walk', ms: st.bootMs },
    ];
    this.timeline.push({ n, label: `live update ${n}`, phases, totalMs: sum(phases), preservedPages: st.preservedPages, blocks: k.kho?.incoming?.blocks ?? null, from: prev?.build?.release ?? null, complete: false });
  }

  /** Completes (or adds) the entry of live update `n` with every phase measured. */
  recordUpdate(n: number, phases: TimelinePhase[], extra: { preservedPages?: number; blocks?: number } = {}): void {
    this.noteKexec();
    const e = this.timeline.find((t) => t.n === n);
    const entry: TimelineEntry = {
      n,
      label: `live update ${n}`,
      phases,
      totalMs: sum(phases),
      preservedPages: extra.preservedPages ?? e?.preservedPages ?? null,
      blocks: extra.blocks ?? e?.blocks ?? null,
      from: e?.from ?? null,
      complete: true,
    };
    if (e) Object.assign(e, entry);
    else this.timeline.push(entry);
  }

  refresh(p: { status?: string; done?: boolean; error?: string | null } = {}): Snapshot {
    this.noteKexec();
    if (p.status !== undefined) this.status = p.status;
    if (p.done !== undefined) this.done = p.done;
    if (p.error !== undefined) this.error = p.error;
    let machine: MachineView | null = null;
    try {
      machine = machineView(this.machine);
    } catch (e) {
      this.error = `cannot read the machine: ${(e as Error).message}`;
    }
    return this.hub.publish({ source: this.source, status: this.status, done: this.done, error: this.error, machine, timeline: this.timeline.map((t) => ({ ...t })), daemon: null });
  }
}

// ---------------------------------------------------------------------------------------- http

export interface DashboardServerOptions {
  /** The snapshots served at /api/snapshot and /api/events. */
  readonly hub: SnapshotSource;
  /** The page at `/`: the machine dashboard (default) or the fleet's. */
  readonly page?: 'machine' | 'fleet';
  /** Extra JSON endpoints (path -> current value), e.g. the fleet's host list. */
  readonly api?: Readonly<Record<string, () => unknown>>;
  /** Default 127.0.0.1. */
  readonly host?: string;
  /** 0 = an ephemeral port. */
  readonly port?: number;
}

export interface DashboardServer {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  close(): Promise<void>;
}

const HTML = 'text/html; charset=utf-8';
const STATIC: Record<string, { file: string; type: string }> = {
  '/index.html': { file: 'index.html', type: HTML },
  '/fleet.html': { file: 'fleet.html', type: HTML },
  '/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/fleet.js': { file: 'fleet.js', type: 'text/javascript; charset=utf-8' },
  '/dom.js': { file: 'dom.js', type: 'text/javascript; charset=utf-8' },
  '/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

function loadStatic(): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const { file } of Object.values(STATIC)) if (!out.has(file)) out.set(file, readFileSync(new URL(`./static/${file}`, import.meta.url)));
  return out;
}

/** Host headers we answer (DNS-rebinding guard): loopback names and the address we bound. */
function hostAllowed(host: string | undefined, bound: string): boolean {
  if (!host) return false;
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.replace(/:\d+$/, '');
  return ['localhost', '127.0.0.1', '[::1]', bound, `[${bound}]`].includes(name) || bound === '0.0.0.0' || bound === '::';
}

export async function startDashboardServer(opts: DashboardServerOptions): Promise<DashboardServer> {
  const host = opts.host ?? '127.0.0.1';
  const files = loadStatic();
  const clients = new Set<ServerResponse>();
  const send = (res: ServerResponse, s: Stamped<object>): void => {
    res.write(`id: ${s.seq}\nevent: snapshot\ndata: ${JSON.stringify(s)}\n\n`);
  };
  const unsubscribe = opts.hub.subscribe((s) => {
    for (const res of clients) send(res, s);
  });
  const ping = setInterval(() => {
    for (const res of clients) res.write(': ping\n\n');
  }, 15000);
  ping.unref();

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const common = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };
    if (!hostAllowed(req.headers.host, host)) {
      res.writeHead(421, { 'content-type': 'text/plain', ...common }).end('unexpected Host header\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain', ...common }).end('only GET\n');
      return;
    }
    const st = url.pathname === '/' ? STATIC[opts.page === 'fleet' ? '/fleet.html' : '/index.html'] : STATIC[url.pathname];
    if (st) {
      res.writeHead(200, { 'content-type': st.type, 'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'", ...common });
      res.end(req.method === 'HEAD' ? undefined : files.get(st.file));
      return;
    }
    if (url.pathname === '/api/snapshot') {
      res.writeHead(200, { 'content-type': 'application/json', ...common }).end(JSON.stringify(opts.hub.current));
      return;
    }
    const api = opts.api?.[url.pathname];
    if (api) {
      res.writeHead(200, { 'content-type': 'application/json', ...common }).end(JSON.stringify(api()));
      return;
    }
    if (url.pathname === '/api/events') {
      res.writeHead(200, { 'content-type': 'text/event-stream', connection: 'keep-alive', ...common });
      res.write('retry: 1000\n\n');
      send(res, opts.hub.current);
      clients.add(res);
      req.on('close', () => clients.delete(res));
      return;
    }
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204, common).end();
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain', ...common }).end(`no such page: ${url.pathname}\n`);
  };

  const server = createServer(handler);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}/`,
    port,
    server,
    close: async () => {
      clearInterval(ping);
      unsubscribe();
      for (const res of clients) res.end();
      clients.clear();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
