/**
 * What `luo status` shows: the daemon's kernel as /sys and debugfs would (LUO state, liveupdate
 * number, sessions and their files, KHO-preserved memory by order), plus the daemon's clients.
 */
import { MemfdFile } from '../handlers/memfd-file.ts';
import type { LuoDaemon } from './server.ts';
import { flbViewJson, type FlbViewJson } from '../luo/flb.ts';

export interface StatusFile {
  token: string;
  size: number | null;
  pages: number | null;
}

export interface DaemonStatus {
  version: number;
  pid: number;
  generation: string;
  state: 'running' | 'kexec';
  release: string;
  cmdline: string;
  ramSize: string;
  liveupdateNum: number;
  device: { registered: boolean; open: boolean };
  sessions: {
    outgoing: Array<{ name: string; files: StatusFile[] }>;
    incoming: Array<{ name: string; retrieved: boolean; files: number }>;
    /** Handed over by the previous kernel, restored on the first open of /dev/liveupdate. */
    incomingPending: boolean;
  };
  preserved: { pages: number; blocks: number; byOrder: Record<string, number>; trackerPages: number };
  /** LUO subsystems: their state, who is registered, what the previous kernel handed over (hex u64s). */
  subsystems: { state: string; registered: string[]; incoming: Record<string, string> };
  /** FLBs in the hand-over this kernel received (name, data, count), and every registered FLB's state. */
  flbs: { incoming: Array<{ name: string; data: string; count: number }>; registered: FlbViewJson[] };
  processes: number;
  connections: number;
  handles: number;
  kexec: Record<string, unknown> | null;
  /** Sessions kept open by the daemon's holder (HOLD), by name. */
  held?: Array<{ name: string; direction: 'outgoing' | 'incoming' }>;
  /** With the STATUS_MACHINE flag: the dashboard's view of the machine (src/web/view.ts). */
  machine?: import('../web/view.ts').MachineView;
}

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;

export function buildStatus(d: LuoDaemon, extra: { processes: number; connections: number; handles: number }): DaemonStatus {
  const k = d.kernel;
  const luo = k.luo;
  const kho = k.kho;
  const byOrder: Record<string, number> = {};
  if (kho) for (const [o, n] of [...kho.preservedByOrder()].sort((a, b) => a[0] - b[0])) byOrder[String(o)] = n;
  const files = (s: { fileSet: { files: ReadonlyArray<{ token: bigint; file: unknown }> } }): StatusFile[] =>
    s.fileSet.files.map((f) => ({
      token: hex(f.token),
      size: f.file instanceof MemfdFile ? f.file.inode.size : null,
      pages: f.file instanceof MemfdFile ? f.file.inode.cachedPages : null,
    }));
  return {
    version: 1,
    pid: process.pid,
    generation: hex(d.generation),
    state: d.kexecing ? 'kexec' : 'running',
    release: k.build.release,
    cmdline: k.cmdline.raw,
    ramSize: hex(d.machine.memory.size),
    liveupdateNum: luo?.incomingNum ?? 0,
    device: { registered: luo?.deviceRegistered ?? false, open: luo?.isOpen ?? false },
    sessions: {
      outgoing: luo?.enabled ? luo.sessions.outgoing.map((s) => ({ name: s.name, files: files(s) })) : [],
      incoming: luo?.enabled ? luo.sessions.incoming.map((s) => ({ name: s.name, retrieved: s.retrieved, files: s.fileSet.files.length })) : [],
      incomingPending: luo?.enabled ? luo.sessions.incomingPending : false,
    },
    preserved: { pages: kho?.preservedPages ?? 0, blocks: kho?.preservedBlocks ?? 0, byOrder, trackerPages: kho?.trackerPages ?? 0 },
    subsystems: luo
      ? { state: luo.subsystems.state, registered: luo.subsystems.names, incoming: Object.fromEntries([...luo.subsystems.incomingData].map(([n, v]) => [n, hex(v)])) }
      : { state: 'normal', registered: [], incoming: {} },
    flbs: {
      incoming: luo ? luo.flbs.incomingRecords.map((r) => ({ name: r.name, data: hex(r.data), count: Number(r.count) })) : [],
      registered: luo?.enabled ? luo.flbs.views.map(flbViewJson) : [],
    },
    ...extra,
    kexec: (d.handover ?? null) as Record<string, unknown> | null,
  };
}
