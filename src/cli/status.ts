/** `luo status`: the daemon's LUO state, sessions, files and preserved memory. */
import type { DaemonStatus } from '../daemon/status.ts';
import { connectDaemon } from './daemon-client.ts';

export function formatStatus(s: DaemonStatus): string {
  const lines = [
    `luod ${s.pid} (generation ${s.generation}) ${s.state}; kernel ${s.release}, RAM ${s.ramSize}`,
    `cmdline: ${s.cmdline}`,
    `liveupdate_num: ${s.liveupdateNum}; /dev/liveupdate ${s.device.registered ? (s.device.open ? 'open' : 'closed') : 'not registered'}`,
    `outgoing sessions: ${s.sessions.outgoing.length}`,
    ...s.sessions.outgoing.map((o) => `  ${o.name}: ${o.files.map((f) => `${f.token} (${f.size ?? '?'} B)`).join(', ') || 'no files'}`),
    `incoming sessions: ${s.sessions.incoming.length}`,
    ...s.sessions.incoming.map((i) => `  ${i.name}: ${i.files} file(s)${i.retrieved ? ', retrieved' : ''}`),
    `preserved: ${s.preserved.pages} page(s) in ${s.preserved.blocks} block(s); by order ${Object.entries(s.preserved.byOrder).map(([o, n]) => `${o}:${n}`).join(' ') || '-'}; tracker ${s.preserved.trackerPages} page(s)`,
    `clients: ${s.processes} process(es), ${s.connections} connection(s)`,
  ];
  return lines.join('\n');
}

export async function runStatus(opts: { socket?: string; json?: boolean }): Promise<number> {
  const c = await connectDaemon('status', opts.socket);
  if (!c) return 1;
  try {
    const s = await c.status();
    process.stdout.write(`${opts.json ? JSON.stringify(s, null, 2) : formatStatus(s)}\n`);
    return 0;
  } finally {
    await c.close();
  }
}
