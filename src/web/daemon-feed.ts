/**
 * The dashboard over a running `luo serve`: polls STATUS (with the STATUS_MACHINE flag) and
 * publishes a snapshot whenever something changed. Across a kexec the connection drops; the feed
 * reconnects, sees a new generation and adds the hand-over the new daemon reports to the timeline.
 */
import { LuoClient } from '../client/index.ts';
import type { DaemonStatus } from '../daemon/status.ts';
import { decodePrefix, MSG, PayloadWriter, STATUS_MACHINE } from '../daemon/wire.ts';
import { errnoError } from '../client/connection.ts';
import type { SnapshotHub, TimelineEntry } from './server.ts';

/** STATUS with the machine view (docs/protocol.md 4.6). */
export async function statusWithMachine(c: LuoClient): Promise<DaemonStatus> {
  const r = decodePrefix(await c.control.request(MSG.STATUS, new PayloadWriter().u32(STATUS_MACHINE).u32(0).finish()));
  if (r.ret < 0) throw errnoError(r.errno, 'STATUS failed');
  return JSON.parse(new TextDecoder().decode(r.rest)) as DaemonStatus;
}

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** A timeline entry from the hand-over statistics a daemon booted from (its STATUS `kexec`). */
export function entryFromHandover(n: number, k: Record<string, unknown>): TimelineEntry {
  const phases = [
    { name: 'serialize', ms: num(k['serializeMs']) ?? 0 },
    { name: 'hand-over', ms: num(k['handoverMs']) ?? 0 },
    { name: 'boot + KHO walk', ms: num(k['bootMs']) ?? 0 },
  ];
  const from = k['from'] as { release?: string } | undefined;
  return {
    n,
    label: `live update ${n}`,
    phases,
    totalMs: phases.reduce((a, p) => a + p.ms, 0),
    preservedPages: num(k['preservedPages']),
    blocks: null,
    from: from?.release ?? null,
    complete: false,
  };
}

export class DaemonFeed {
  private client: LuoClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private lastKey = '';
  private lastGeneration = '';
  private readonly timeline: TimelineEntry[] = [];
  private polling = false;

  constructor(readonly hub: SnapshotHub, readonly socketPath: string, private readonly intervalMs = 500) {}

  /** Polls once now (rejects when the daemon cannot be reached), then every interval. */
  async start(): Promise<void> {
    this.client = await LuoClient.connect(this.socketPath);
    await this.poll();
    this.timer = setInterval(() => void this.poll(), this.intervalMs);
  }

  async poll(): Promise<void> {
    if (this.polling || this.stopped) return;
    this.polling = true;
    try {
      if (!this.client || this.client.control.isClosed) {
        try {
          this.client = await LuoClient.connect(this.socketPath);
        } catch (e) {
          this.client = undefined;
          this.publishError(`daemon at ${this.socketPath} unreachable (${(e as Error).message}); a kexec may be in progress — retrying`);
          return;
        }
      }
      let s: DaemonStatus;
      try {
        s = await statusWithMachine(this.client);
      } catch (e) {
        void this.client.close().catch(() => undefined);
        this.client = undefined;
        this.publishError(`lost the daemon (${(e as Error).message}); reconnecting`);
        return;
      }
      this.publishStatus(s);
    } finally {
      this.polling = false;
    }
  }

  private publishError(msg: string): void {
    if (this.hub.current.error === msg) return;
    this.lastKey = '';
    this.hub.patch({ error: msg, status: 'waiting for the daemon' });
  }

  private publishStatus(s: DaemonStatus): void {
    if (s.generation !== this.lastGeneration) {
      this.lastGeneration = s.generation;
      if (s.kexec && s.liveupdateNum > 0 && !this.timeline.some((t) => t.n === s.liveupdateNum)) this.timeline.push(entryFromHandover(s.liveupdateNum, s.kexec));
    }
    // Publish only on change (the log and timings aside, the view is deterministic).
    const key = JSON.stringify({ ...s, machine: s.machine ? { ...s.machine, memory: { ...s.machine.memory, computeMs: 0 } } : null });
    if (key === this.lastKey) return;
    this.lastKey = key;
    this.hub.publish({
      source: { kind: 'daemon', label: `luo serve at ${this.socketPath}` },
      status: s.state === 'kexec' ? 'kexec in progress' : `daemon ${s.pid} serving; ${s.connections} connection(s)`,
      done: false,
      error: null,
      machine: s.machine ?? null,
      timeline: this.timeline.map((t) => ({ ...t })),
      daemon: { pid: s.pid, generation: s.generation, socket: this.socketPath, processes: s.processes, connections: s.connections, held: (s.held ?? []).map((h) => h.name) },
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.client?.close().catch(() => undefined);
  }
}
