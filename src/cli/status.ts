/** `luo status`: the daemon's LUO state, sessions, files and preserved memory. */
import type { DaemonStatus } from '../daemon/status.ts';
import { connectDaemon } from './daemon-client.ts';

/** Bytes in binary units: "64 GiB", "1.5 MiB", "4096 B". */
export function humanBytes(n: number | bigint): string {
  let v = Number(n);
  for (const u of ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']) {
    if (v < 1024 || u === 'PiB') return u === 'B' ? `${v} B` : `${Number.isInteger(v) ? v : v.toFixed(1)} ${u}`;
    v /= 1024;
  }
  return `${n} B`;
}

/** Items joined with ", ", wrapped to `width` columns, continuation lines indented by `indent`. */
function wrapList(head: string, items: readonly string[], indent: string, width = 100): string[] {
  const lines: string[] = [];
  let cur = head;
  items.forEach((it, i) => {
    const piece = `${it}${i < items.length - 1 ? ',' : ''}`;
    if (cur.length + 1 + piece.length > width && cur.trim() !== '') {
      lines.push(cur);
      cur = `${indent}${piece}`;
    } else cur = cur.endsWith(' ') || cur === '' ? `${cur}${piece}` : `${cur} ${piece}`;
  });
  lines.push(cur);
  return lines;
}

/** The live update that booted this daemon: its blackout and the phases measured on each side (load: the image read and checked). */
function lastUpdate(k: Record<string, unknown> | null): string[] {
  if (!k) return [];
  const ms = (key: string): string | undefined => (typeof k[key] === 'number' ? `${key.replace(/Ms$/, '')} ${(k[key] as number).toFixed(1)} ms` : undefined);
  const phases = ['serializeMs', 'handoverMs', 'loadMs', 'bootMs'].map(ms).filter((x): x is string => x !== undefined);
  // the new daemon read the image on its own core while the old one wrote it (daemon/successor.ts)
  if (k['streamed'] === true) phases.push('image read as it was written');
  // most pages were handed over ahead of the freeze (daemon/kexec.ts precopyTo)
  if (typeof k['precopyPages'] === 'number') phases.push(`${k['precopyPages']} page(s) pre-copied in ${Number(k['precopyMs']).toFixed(0)} ms before the freeze, ${Number(k['changedPages'] ?? 0)} changed since`);
  const from = (k['from'] as { release?: string; pid?: number } | undefined) ?? {};
  const blackout = typeof k['blackoutMs'] === 'number' ? `blackout ${(k['blackoutMs'] as number).toFixed(1)} ms` : 'blackout not measured (an image from an older luo)';
  return [`last live update: from ${from.release ?? '?'} (pid ${from.pid ?? '?'}); ${blackout}${phases.length ? ` (${phases.join(', ')})` : ''}`];
}

export function formatStatus(s: DaemonStatus): string {
  const incoming = s.sessions.incomingPending
    ? ['incoming sessions: handed over by the previous kernel, restored on the first open of /dev/liveupdate']
    : [`incoming sessions: ${s.sessions.incoming.length}`, ...s.sessions.incoming.map((i) => `  ${i.name}: ${i.files} file(s)${i.retrieved ? ', retrieved' : ''}`)];
  const lines = [
    `luod ${s.pid} (generation ${s.generation}) ${s.state}; kernel ${s.release}, RAM ${humanBytes(BigInt(s.ramSize))}`,
    `cmdline: ${s.cmdline}`,
    `liveupdate_num: ${s.liveupdateNum}; /dev/liveupdate ${s.device.registered ? (s.device.open ? 'open' : 'closed') : 'not registered'}`,
    `outgoing sessions: ${s.sessions.outgoing.length}`,
    ...s.sessions.outgoing.flatMap((o) => (o.files.length
      ? wrapList(`  ${o.name}:`, o.files.map((f) => `${f.token} (${f.size === null ? '?' : humanBytes(f.size)})`), '    ')
      : [`  ${o.name}: no files`])),
    ...incoming,
    `preserved: ${s.preserved.pages} page(s) in ${s.preserved.blocks} block(s); by order ${Object.entries(s.preserved.byOrder).map(([o, n]) => `${o}:${n}`).join(' ') || '-'}; tracker ${s.preserved.trackerPages} page(s)`,
    ...(s.subsystems?.registered.length || Object.keys(s.subsystems?.incoming ?? {}).length
      ? [`subsystems (${s.subsystems.state}): ${s.subsystems.registered.join(', ') || '-'}${Object.keys(s.subsystems.incoming).length ? `; handed over ${Object.entries(s.subsystems.incoming).map(([n, v]) => `${n}=${v}`).join(' ')}` : ''}`]
      : []),
    ...(s.flbs?.incoming.length ? [`FLBs handed over: ${s.flbs.incoming.map((f) => `${f.name} (${f.count} file(s), data ${f.data})`).join(', ')}`] : []),
    ...(s.flbs?.registered?.length
      ? wrapList('FLBs:', s.flbs.registered.map((f) => `${f.name} [${f.handlers.join(', ')}] ${f.outgoing.files} file(s) now${f.incoming ? `, incoming ${f.incoming.state} (${f.incoming.files} file(s), data ${f.incoming.data})` : ''}`), '  ')
      : []),
    `clients: ${s.processes} process(es), ${s.connections} connection(s)`,
    ...lastUpdate(s.kexec),
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
