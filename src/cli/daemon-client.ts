/**
 * How every CLI command reaches `luo serve`: one connection helper with one message when no daemon
 * answers (what was tried, and what to do), whatever the reason (no socket, a stale socket, a
 * path that is not a socket, no permission).
 */
import { LuoClient } from '../client/index.ts';
import { defaultSocketPath } from '../daemon/wire.ts';

/** Why nothing answers at `socket`, in words, from the connect error. */
export function noDaemonReason(socket: string, e: unknown): string {
  const cause = (e as { cause?: { code?: string } }).cause;
  const code = cause?.code ?? (e as { code?: string }).code ?? (e as { errno?: string }).errno;
  switch (code) {
    case 'ENOENT':
      return `no daemon at ${socket} (the socket does not exist)`;
    case 'ECONNREFUSED':
      return `no daemon at ${socket} (the socket is stale: its daemon has exited)`;
    case 'ENOTSOCK':
    case 'ECONNRESET':
      return `${socket} is not a luo daemon's socket`;
    case 'EACCES':
    case 'EPERM':
      return `no permission to connect to ${socket}`;
    default:
      return `cannot reach a luo daemon at ${socket} (${e instanceof Error ? e.message.replace(/^[A-Z]+: /, '') : String(e)})`;
  }
}

/**
 * A client of the daemon at `socket` (default: the default socket), or undefined after printing
 * "luo <cmd>: <why>; start one with `luo serve ...` or pass --socket PATH" on stderr.
 */
export async function connectDaemon(cmd: string, socket: string | undefined): Promise<LuoClient | undefined> {
  const path = socket ?? defaultSocketPath();
  try {
    return await LuoClient.connect(path);
  } catch (e) {
    const start = socket ? `luo serve --socket ${path}` : 'luo serve';
    process.stderr.write(`luo ${cmd}: ${noDaemonReason(path, e)}; start one with \`${start}\` or pass --socket PATH\n`);
    return undefined;
  }
}
