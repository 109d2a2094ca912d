/**
 * A kexec ends the old kernel's processes: clients that said HELLO_ENDS_AT_KEXEC (every shim
 * program does) and hold a LUO file are SIGKILLed, found through the kernel's socket table (not the
 * pid they stated), unless the kexec keeps clients; the KEXEC caller is never ended.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LuoClient } from '../../src/client/index.ts';
import { parseSsUnix } from '../../src/daemon/peers.ts';
import { cleanup, type DaemonProc, ROOT, runLuo, startDaemon, tempDir } from './helpers.ts';

const CLIENT = pathToFileURL(join(ROOT, 'dist', 'client', 'index.js')).href;

/** A Node client of the compiled package: HELLO as `pid` (default its own), a held session, then waits (or kexecs). */
const SCRIPT = `
const [socket, stated, mode] = process.argv.slice(1);
const { LuoClient } = await import(${JSON.stringify(CLIENT)});
const c = await LuoClient.connect(socket, { endsAtKexec: true, ...(stated !== '0' ? { pid: Number(stated) } : {}) });
const dev = await c.openDevice();
await dev.createSession('held-' + process.pid);
await dev.close();
console.log('READY');
if (mode === 'kexec') {
  const r = await c.kexec();
  console.log('ENDED ' + JSON.stringify(r.stats.endedClients));
  process.exit(0);
}
setInterval(() => {}, 1 << 30);
`;

interface Child {
  proc: ChildProcess;
  out: string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function client(socket: string, opts: { stated?: number; mode?: 'hold' | 'kexec' } = {}): Promise<Child> {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', SCRIPT, socket, String(opts.stated ?? 0), opts.mode ?? 'hold'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const c: Child = { proc, out: '', exit: new Promise((r) => proc.once('exit', (code, signal) => r({ code, signal }))) };
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (b: Buffer) => {
      c.out += b.toString();
      if (c.out.includes('READY')) resolve();
    });
    void c.exit.then((e) => reject(new Error(`client exited before READY: ${JSON.stringify(e)} ${c.out}`)));
  });
  return c;
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

let dir: string;
let d: DaemonProc;
const started: ChildProcess[] = [];

before(async () => {
  dir = tempDir('kexec-clients');
  d = await startDaemon(dir);
});

after(async () => {
  for (const p of started) p.kill('SIGKILL');
  await cleanup(dir);
});

async function kexec(keepClients = false): Promise<number[]> {
  const c = await LuoClient.connect(d.socket);
  const r = await c.kexec({ keepClients });
  return r.stats['endedClients'] as number[];
}

test('a kexec ends the client holding a session, and says so; the session is handed over', async () => {
  const a = await client(d.socket);
  started.push(a.proc);
  const ended = await kexec();
  assert.deepEqual(ended, [a.proc.pid]);
  assert.deepEqual(await a.exit, { code: null, signal: 'SIGKILL' });
  const c = await LuoClient.connect(d.socket);
  const dev = await c.openDevice();
  const s = await dev.retrieveSession(`held-${a.proc.pid}`);
  await s.finish();
  await s.close();
  await dev.close();
  await c.close();
});

test('--keep-clients leaves them running (the CLI says nothing was ended)', async () => {
  const a = await client(d.socket);
  started.push(a.proc);
  const r = await runLuo(['kexec', '--socket', d.socket, '--keep-clients', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const stats = (JSON.parse(r.stdout) as { stats: { endedClients: number[]; keptClients: boolean } }).stats;
  assert.deepEqual([stats.endedClients, stats.keptClients], [[], true]);
  assert.ok(alive(a.proc.pid!), 'kept running (its connections went with the old daemon)');
  a.proc.kill('SIGKILL');
  // without the flag, the CLI names what it ended
  const b = await client(d.socket);
  started.push(b.proc);
  const r2 = await runLuo(['kexec', '--socket', d.socket]);
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stdout, new RegExp(`ended the old kernel's client process ${b.proc.pid} `));
  assert.equal((await b.exit).signal, 'SIGKILL');
});

test('the stated pid is not believed: a client claiming another process ends itself, not that process', async () => {
  const victim = spawn('sleep', ['1000'], { stdio: 'ignore' });
  started.push(victim);
  const liar = await client(d.socket, { stated: victim.pid! });
  started.push(liar.proc);
  const ended = await kexec();
  assert.deepEqual(ended, [liar.proc.pid]);
  assert.equal((await liar.exit).signal, 'SIGKILL');
  assert.ok(alive(victim.pid!), 'the process named in HELLO is untouched');
});

test('the KEXEC caller is never ended, even when it holds sessions itself', async () => {
  const other = await client(d.socket);
  started.push(other.proc);
  const caller = await client(d.socket, { mode: 'kexec' });
  started.push(caller.proc);
  assert.deepEqual(await caller.exit, { code: 0, signal: null });
  assert.match(caller.out, new RegExp(`ENDED \\[${other.proc.pid}\\]`));
  assert.equal((await other.exit).signal, 'SIGKILL');
});

test('KEXEC with unknown flags is EINVAL and changes nothing', async () => {
  const { Connection } = await import('../../src/client/connection.ts');
  const { MSG, PayloadWriter, decodePrefix } = await import('../../src/daemon/wire.ts');
  const conn = await Connection.open(d.socket, process.pid);
  const r = decodePrefix(await conn.request(MSG.KEXEC, new PayloadWriter().u32(2).u32(0).u32(0).u32(0).finish()));
  assert.deepEqual([r.ret, r.errno], [-1, 22]);
  conn.destroy();
});

test('ss rows: inodes, peers and every holder (a forked child shares the socket)', () => {
  const rows = parseSsUnix([
    'u_str ESTAB 0      0      /tmp/a b.sock 1725169 * 1725168 users:(("python3",pid=8821,fd=5),("python3",pid=8769,fd=5))',
    'u_str ESTAB 0      0                     * 1725168 * 1725169 users:(("python3",pid=8821,fd=4),("python3",pid=8769,fd=4),("python3",pid=8769,fd=9))',
    'u_str ESTAB 0      0                     * 490     * 491',
    'garbage',
  ].join('\n'));
  assert.deepEqual(rows, [
    { inode: 1725169, peer: 1725168, pids: [8821, 8769] },
    { inode: 1725168, peer: 1725169, pids: [8821, 8769] },
    { inode: 490, peer: 491, pids: [] },
  ]);
});
