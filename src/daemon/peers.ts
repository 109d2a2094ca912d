/**
 * Which processes hold the client end of the daemon's connections. The pid a client states in HELLO
 * is its own word (and after a fork the holder is another process); the kernel's answer comes from
 * sock_diag, read here through `ss -xpnH` (iproute2): every unix socket with its inode, its peer's
 * inode and the processes that have it open. Used by a kexec to end the old kernel's processes.
 */
import { spawnSync } from 'node:child_process';
import { fstatSync } from 'node:fs';
import type { Socket } from 'node:net';

export interface UnixSocketRow {
  readonly inode: number;
  readonly peer: number;
  readonly pids: readonly number[];
}

/** One `ss -xpnH` line: netid, state, queues, local address and inode, peer address and inode, users. */
const ROW = /^\S+\s+\S+\s+\d+\s+\d+\s+.*?\s(\d+)\s+\S+\s+(\d+)(?:\s+users:\((.*)\))?\s*$/;

export function parseSsUnix(text: string): UnixSocketRow[] {
  const rows: UnixSocketRow[] = [];
  for (const line of text.split('\n')) {
    const m = ROW.exec(line);
    if (!m) continue;
    const pids = [...(m[3] ?? '').matchAll(/pid=(\d+)/g)].map((p) => Number(p[1]));
    rows.push({ inode: Number(m[1]), peer: Number(m[2]), pids: [...new Set(pids)] });
  }
  return rows;
}

/** The inode of a connected socket's own end (its fd in this process). */
export function socketInode(sock: Socket): number | undefined {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  try {
    return Number(fstatSync(fd).ino);
  } catch {
    return undefined;
  }
}

/**
 * For each of `ours` (inodes of this process's ends), the pids holding the other end; or why the
 * kernel could not be asked.
 */
export function peerHolders(ours: readonly number[]): Map<number, readonly number[]> | string {
  const r = spawnSync('ss', ['-xpnH'], { encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.error) return `cannot list socket holders: ss (iproute2) ${(r.error as NodeJS.ErrnoException).code === 'ENOENT' ? 'is not installed' : `failed: ${r.error.message}`}`;
  if (r.status !== 0) return `cannot list socket holders: ss exited ${r.status}: ${r.stderr.trim()}`;
  const rows = parseSsUnix(r.stdout);
  const byInode = new Map(rows.map((row) => [row.inode, row]));
  const out = new Map<number, readonly number[]>();
  for (const ino of ours) {
    const peer = byInode.get(ino)?.peer;
    out.set(ino, peer === undefined ? [] : byInode.get(peer)?.pids ?? []);
  }
  return out;
}
