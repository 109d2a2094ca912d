/** `luo kexec`: asks the daemon to live-update into a new daemon process (optionally another build). */
import { isLuoError } from '../errno.ts';
import { connectDaemon } from './daemon-client.ts';

export async function runKexec(opts: { socket?: string; build?: string; cmdline?: string; release?: string; keepClients?: boolean; json?: boolean }): Promise<number> {
  const c = await connectDaemon('kexec', opts.socket);
  if (!c) return 1;
  try {
    const r = await c.kexec({ ...(opts.build ? { build: opts.build } : {}), ...(opts.cmdline ? { cmdline: opts.cmdline } : {}), ...(opts.release ? { release: opts.release } : {}), keepClients: opts.keepClients === true });
    if (opts.json) process.stdout.write(`${JSON.stringify({ pid: r.pid, generation: `0x${r.generation.toString(16)}`, stats: r.stats })}\n`);
    else {
      const st = r.stats;
      const ahead = typeof st['precopyPages'] === 'number' ? `; ${String(st['carriedPages'])} of them handed over ahead of the freeze, ${String(st['imageBytes'])} bytes written in the blackout` : '';
      process.stdout.write(`luo kexec: daemon ${r.pid} (generation 0x${r.generation.toString(16)}) took over; image ${String(st['image'])} (${String(st['handoverBytes'] ?? st['imageBytes'])} bytes), ${String(st['preservedPages'])} preserved page(s)${ahead}; blackout ${Number(st['blackoutMs'] ?? st['totalMs']).toFixed(1)} ms${typeof st['successorStartMs'] === 'number' ? ` (the new daemon started ahead, in ${(st['successorStartMs'] as number).toFixed(0)} ms, outside it)` : ''}\n`);
      const ended = (r.stats['endedClients'] as number[] | undefined) ?? [];
      if (ended.length) process.stdout.write(`luo kexec: ended the old kernel's client process${ended.length > 1 ? 'es' : ''} ${ended.join(', ')} (--keep-clients leaves them running)\n`);
    }
    // what the old kernel had to say about the files it handed over (a memfd that grew, ...)
    for (const w of (r.stats['warnings'] as string[] | undefined) ?? []) process.stderr.write(`luo kexec: warning: ${w}\n`);
    return 0;
  } catch (e) {
    // "luo kexec: <what went wrong> (ERRNO)", once
    const msg = isLuoError(e) ? `${e.detail.replace(/^kexec: /, '')} (${e.errno})` : (e as Error).message;
    process.stderr.write(`luo kexec: ${msg}\n`);
    return 1;
  } finally {
    c.control.destroy();
  }
}
