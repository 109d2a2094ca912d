/**
 * `luo session create|list|preserve|retrieve|finish`: LUO sessions of a running daemon, one
 * command at a time. A session fd dies with the process that holds it, so a one-shot command
 * hands its session to the daemon's *holder* before exiting (HOLD, docs/protocol.md 4.10) and
 * the next command takes it back (TAKE): sessions made here live until they are finished, or
 * until a kexec hands them over. After a kexec, `retrieve` and `finish` take an incoming session
 * with RETRIEVE_SESSION the first time, then keep it held as well.
 */
import { bold, dim, green, yellow } from './style.ts';
import { connectDaemon } from './daemon-client.ts';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Connection, errnoError } from '../client/connection.ts';
import { LuoClient, LuoSession } from '../client/index.ts';
import { decodePrefix, MSG, PayloadWriter } from '../daemon/wire.ts';
import { isLuoError, type LuoError } from '../errno.ts';
import { statusWithMachine } from '../web/daemon-feed.ts';

export interface SessionCliOptions {
  socket?: string;
  json?: boolean;
}

/** A usage or input problem (exit 2), as opposed to an operation that failed (exit 1). */
class UsageError extends Error {}
class CliError extends Error {}


/** "0x1a", "26" -> 26n (a u64). */
export function parseToken(s: string): bigint {
  const t = s.trim();
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(t)) throw new UsageError(`bad token "${s}": a number, decimal or 0x hex (e.g. 0x100)`);
  const v = BigInt(t);
  if (v >= 1n << 64n) throw new UsageError(`token ${s} does not fit in 64 bits`);
  return v;
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/** HOLD: the session on `conn` goes to the daemon's holder; the connection then carries nothing. */
async function hold(conn: Connection): Promise<void> {
  const r = decodePrefix(await conn.request(MSG.HOLD, new PayloadWriter().u32(0).u32(0).finish()));
  if (r.ret < 0) throw errnoError(r.errno, `HOLD: ${new TextDecoder().decode(r.rest) || 'refused'}`);
}

/** TAKE: the held session `name` onto a new connection, or undefined when none is held. */
async function take(c: LuoClient, name: string): Promise<LuoSession | undefined> {
  const conn = await c.rawConnection();
  const n = new TextEncoder().encode(name);
  const r = decodePrefix(await conn.request(MSG.TAKE, new PayloadWriter().u32(n.length).u32(0).bytes(n).finish()));
  if (r.ret < 0) {
    conn.destroy();
    if (r.errno === 2) return undefined;
    throw errnoError(r.errno, `TAKE ${name}`);
  }
  return new LuoSession(c, conn, name);
}

async function openDevice(c: LuoClient): Promise<Awaited<ReturnType<LuoClient['openDevice']>>> {
  try {
    return await c.openDevice();
  } catch (e) {
    if (isLuoError(e, 'EBUSY')) throw new CliError('/dev/liveupdate is open in another process (an agent or another luo command): close it and retry');
    if (isLuoError(e, 'ENOENT')) throw new CliError("the daemon's kernel has no /dev/liveupdate (liveupdate=on missing, or the incoming state failed to restore)");
    throw e;
  }
}

/** A held session, or an incoming one retrieved now (RETRIEVE_SESSION). */
async function takeOrRetrieve(c: LuoClient, name: string): Promise<LuoSession> {
  const held = await take(c, name);
  if (held) return held;
  const dev = await openDevice(c);
  try {
    return await dev.retrieveSession(name);
  } catch (e) {
    if (isLuoError(e, 'ENOENT')) throw new CliError(`no session named "${name}": not held by the daemon and not handed over by the previous kernel (see \`luo session list\`)`);
    if (isLuoError(e, 'EBUSY')) throw new CliError(`the incoming session "${name}" is already open in another process`);
    throw e;
  } finally {
    await dev.close();
  }
}

/** Runs `fn` on the session, then hands it back to the holder (also when `fn` failed). */
async function withHeld<T>(c: LuoClient, s: LuoSession, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } finally {
    if (!s.conn.isClosed) {
      await hold(s.conn);
      await s.conn.end();
    }
  }
}

function errnoHint(e: LuoError, what: string): string {
  const hints: Record<string, string> = {
    EEXIST: 'that name or token is already in use',
    EBUSY: 'busy: a live update may be in progress, or the file is already preserved',
    ENOENT: 'not found',
    EINVAL: 'invalid for this session (an outgoing session cannot be retrieved or finished; an incoming one cannot preserve)',
    ENOSPC: 'no room left in the session',
    EPERM: 'not permitted',
  };
  return `${what}: ${e.message}${hints[e.errno] ? ` (${hints[e.errno]})` : ''}`;
}

async function run(opts: SessionCliOptions, what: string, fn: (c: LuoClient) => Promise<void>): Promise<number> {
  const c = await connectDaemon(`session ${what}`, opts.socket);
  if (!c) return 1;
  try {
    await fn(c);
    return 0;
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`luo session ${what}: ${e.message}\n`);
      return 2;
    }
    const msg = e instanceof CliError ? e.message : isLuoError(e) ? errnoHint(e, what) : (e as Error).message;
    process.stderr.write(`luo session ${what}: ${msg}\n`);
    return 1;
  } finally {
    await c.close().catch(() => undefined);
  }
}

const out = (opts: SessionCliOptions, json: unknown, text: string): void => {
  process.stdout.write(opts.json ? `${JSON.stringify(json, null, 2)}\n` : `${text}\n`);
};

export function sessionCreate(name: string, opts: SessionCliOptions): Promise<number> {
  return run(opts, 'create', async (c) => {
    if (!name || new TextEncoder().encode(name).length > 63) throw new UsageError(`a session name is 1 to 63 bytes, not "${name}"`);
    const dev = await openDevice(c);
    let s: LuoSession;
    try {
      s = await dev.createSession(name);
    } catch (e) {
      if (isLuoError(e, 'EEXIST')) throw new CliError(`a session named "${name}" already exists (see \`luo session list\`)`);
      throw e;
    } finally {
      await dev.close();
    }
    await hold(s.conn);
    await s.conn.end();
    out(opts, { name, direction: 'outgoing', held: true }, `${green('created')} session ${bold(name)} ${dim('(held by the daemon until finished or handed over)')}`);
  });
}

export function sessionList(opts: SessionCliOptions): Promise<number> {
  return run(opts, 'list', async (c) => {
    // LUO restores the incoming sessions at the first open of /dev/liveupdate: open it once so a
    // fresh kernel lists what was handed over (busy = someone has it open, so it is restored).
    try {
      await (await c.openDevice()).close();
    } catch {
      /* EBUSY or no device: list what the kernel has */
    }
    const s = await statusWithMachine(c);
    const held = new Set((s.held ?? []).map((h) => h.name));
    const m = s.machine;
    const outgoing = (m?.sessions.outgoing ?? []).map((x) => ({ name: x.name, held: held.has(x.name), files: x.files.map((f) => ({ token: f.token, handler: f.handler, size: f.size })) }));
    const incoming = (m?.sessions.incoming ?? []).map((x) => ({ name: x.name, retrieved: x.retrieved ?? false, held: held.has(x.name), files: x.files.map((f) => ({ token: f.token, handler: f.handler, retrieved: f.retrieveStatus === 1 })) }));
    if (opts.json) {
      out(opts, { liveupdateNum: s.liveupdateNum, generation: s.generation, outgoing, incoming }, '');
      return;
    }
    const lines = [dim(`daemon ${s.pid}, liveupdate_num ${s.liveupdateNum}`), bold(`outgoing (${outgoing.length})`)];
    for (const o of outgoing) {
      lines.push(`  ${o.name}${o.held ? dim(' [held]') : ''}`);
      for (const f of o.files) lines.push(`    token ${f.token}  ${f.handler}  ${f.size ?? '?'} bytes`);
      if (!o.files.length) lines.push(dim('    no files'));
    }
    lines.push(bold(`incoming (${incoming.length})`));
    for (const i of incoming) {
      lines.push(`  ${i.name}${i.retrieved ? yellow(' retrieved') : ''}${i.held ? dim(' [held]') : ''}`);
      for (const f of i.files) lines.push(`    token ${f.token}  ${f.handler}${f.retrieved ? '  retrieved' : ''}`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  });
}

export function sessionPreserve(name: string, tokenArg: string, file: string, opts: SessionCliOptions & { copy?: boolean; pos?: string }): Promise<number> {
  return run(opts, 'preserve', async (c) => {
    const token = parseToken(tokenArg);
    const path = resolve(file);
    let size: number;
    try {
      const st = statSync(path);
      if (!st.isFile()) throw new UsageError(`${file} is not a regular file`);
      size = st.size;
    } catch (e) {
      if (e instanceof UsageError) throw e;
      throw new UsageError(`cannot read ${file}: ${(e as Error).message}`);
    }
    const pos = opts.pos === undefined ? 0 : Number(opts.pos);
    if (!Number.isSafeInteger(pos) || pos < 0) throw new UsageError(`bad --pos "${opts.pos}"`);
    const s = await take(c, name);
    if (!s) throw new CliError(`no held session named "${name}": create it first with \`luo session create ${name}\``);
    await withHeld(c, s, async () => {
      if (opts.copy) await s.preserveBuffer(readFileSync(path), token, { pos });
      else await s.preserveFile(path, token, { pos });
    });
    out(opts, { name, token: hex(token), file: path, size, mode: opts.copy ? 'copy' : 'path' },
      `${green('preserved')} ${file} as token ${hex(token)} in ${bold(name)} ${dim(opts.copy ? `(${size} bytes copied now)` : `(${size} bytes; the contents are read at kexec — keep the file)`)}`);
  });
}

export function sessionRetrieve(name: string, tokenArg: string, opts: SessionCliOptions & { output?: string }): Promise<number> {
  return run(opts, 'retrieve', async (c) => {
    const token = parseToken(tokenArg);
    const s = await takeOrRetrieve(c, name);
    const f = await withHeld(c, s, async () => {
      try {
        return await s.retrieve(token);
      } catch (e) {
        if (isLuoError(e, 'ENOENT')) throw new CliError(`session "${name}" has no file with token ${hex(token)}`);
        if (isLuoError(e, 'EINVAL')) throw new CliError(`session "${name}" is outgoing: only files handed over by the previous kernel can be retrieved`);
        throw e;
      }
    });
    const meta = { name, token: hex(token), size: f.size, pos: f.pos, seals: f.seals };
    if (opts.output) {
      writeFileSync(opts.output, f.content);
      if (opts.json) out(opts, { ...meta, output: resolve(opts.output) }, '');
      else process.stderr.write(`${green('retrieved')} token ${hex(token)} of ${bold(name)}: ${f.size} bytes, position ${f.pos}, seals 0x${f.seals.toString(16)} -> ${opts.output}\n`);
    } else if (opts.json) {
      out(opts, { ...meta, base64: Buffer.from(f.content).toString('base64') }, '');
    } else {
      process.stdout.write(f.content);
    }
  });
}

export function sessionFinish(name: string, opts: SessionCliOptions): Promise<number> {
  return run(opts, 'finish', async (c) => {
    const s = await takeOrRetrieve(c, name);
    try {
      await s.finish();
    } catch (e) {
      await hold(s.conn).catch(() => undefined);
      await s.conn.end().catch(() => undefined);
      if (isLuoError(e, 'EINVAL')) throw new CliError(`session "${name}" is outgoing: FINISH is for sessions handed over by the previous kernel`);
      if (isLuoError(e, 'EBUSY')) throw new CliError(`session "${name}" cannot finish yet: retrieve every file first (luo session list)`);
      throw e;
    }
    await s.close();
    out(opts, { name, finished: true }, `${green('finished')} session ${bold(name)}`);
  });
}
