/** `luo stop`: powers the daemon off (SHUTDOWN) and waits until its socket is gone. */
import { LuoDaemon } from '../daemon/server.ts';
import { defaultSocketPath } from '../daemon/wire.ts';
import { connectDaemon } from './daemon-client.ts';

export async function runStop(opts: { socket?: string }): Promise<number> {
  const c = await connectDaemon('stop', opts.socket);
  if (!c) return 1;
  const path = opts.socket ?? defaultSocketPath();
  const pid = c.daemonPid;
  try {
    await c.shutdown();
  } catch (e) {
    process.stderr.write(`luo stop: ${(e as Error).message}\n`);
    return 1;
  }
  // the daemon removes its socket as it goes: wait for that, however long it takes
  while (await LuoDaemon.alive(path)) await new Promise((r) => setTimeout(r, 20));
  process.stdout.write(`luo stop: daemon ${pid} on ${path} stopped\n`);
  return 0;
}
