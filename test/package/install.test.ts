/**
 * The package as users get it: `npm pack`, then `npm install` of the tarball into a fresh project
 * (dependencies from the registry, the LD_PRELOAD shim built by postinstall), then
 * (a) a plain JavaScript (.mjs) client, importing 'luo', drives `luo serve` (the installed bin,
 *     compiled code, no TypeScript loader) through a live update and reads its memfd back, and
 *     the simulator API ('luo/sim') runs a preserve/kexec/retrieve in process, also of a file of
 *     the shipped example handler plugin (examples/handlers/counter.mjs);
 * (b) `tsc` type-checks a TypeScript consumer with module/moduleResolution node16 against the
 *     shipped declarations.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../native/harness.ts';

function sh(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env, maxBuffer: 1 << 26 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} (in ${cwd}) exited ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** The newest mtime under a directory. */
function newest(dir: string): number {
  return Math.max(0, ...readdirSync(dir, { withFileTypes: true }).map((e) => (e.isDirectory() ? newest(join(dir, e.name)) : statSync(join(dir, e.name)).mtimeMs)));
}

const CLIENT = `
import { connect } from 'luo';
import { Machine, memfdCreate, DEFAULT_BUILD, withHandlers, loadHandlerPlugins } from 'luo/sim';
import { fileURLToPath } from 'node:url';
const socket = process.argv[2];
const c = await connect(socket);
const dev = await c.openDevice();
const s = await dev.createSession('from-js');
await s.preserveBuffer('hello from plain javascript', 0x1a, { pos: 5 });
const k = await c.kexec();
const c2 = await connect(socket);
const dev2 = await c2.openDevice();
const s2 = await dev2.retrieveSession('from-js');
const f = await s2.retrieve(0x1a);
await s2.finish();
await c2.shutdown();
// the simulator in process
const m = new Machine({ ramSize: 1n << 30n });
m.kernel.luo.open();
const ses = m.kernel.luo.createSession('vm');
const ram = memfdCreate(m.kernel.memfd, 'ram', 0);
ram.pwrite(new TextEncoder().encode('in process'), 0);
m.kernel.luo.sessions.preserveFile(ses, 1n, ram);
const k2 = m.kexec();
k2.luo.open();
const back = k2.luo.sessions.retrieveFile(k2.luo.retrieveSession('vm'), 1n);
// the shipped example handler plugin, from the installed package
const [counter] = await loadHandlerPlugins([fileURLToPath(new URL('./node_modules/luo/examples/handlers/counter.mjs', import.meta.url))]);
const pm = new Machine({ ramSize: 1n << 30n, build: withHandlers(DEFAULT_BUILD, [counter]) });
pm.kernel.luo.open();
pm.kernel.luo.sessions.preserveFile(pm.kernel.luo.createSession('dev'), 7n, counter.open({ count: 12 }));
const pk2 = pm.kexec();
pk2.luo.open();
const cnt = counter.describe(pk2.luo.sessions.retrieveFile(pk2.luo.retrieveSession('dev'), 7n)).count;
console.log(JSON.stringify({ content: new TextDecoder().decode(f.content), pos: f.pos, newPid: k.pid, sim: new TextDecoder().decode(back.pread(10, 0)), plugin: cnt }));
`;

const CONSUMER = `
import { connect, LuoError, type ErrnoName } from 'luo';
import { Machine, KernelPanic, memfdCreate, processesOf, O_RDWR } from 'luo/sim';
export async function use(path: string): Promise<ErrnoName | 'ok'> {
  try {
    const c = await connect(path);
    const st = await c.status();
    return st.sessions.outgoing.length >= 0 ? 'ok' : 'ok';
  } catch (e) {
    return e instanceof LuoError ? e.errno : 'ok';
  }
}
const m = new Machine({ ramSize: 1n << 30n });
const p = processesOf(m.kernel).spawn();
const fd: number = p.open('/dev/liveupdate', O_RDWR);
const f = memfdCreate(m.kernel.memfd, 'x', 0);
const n: number = f.pwrite(new Uint8Array(1), 0);
export const ok: boolean = fd >= 0 && n === 1 && !(new Error() instanceof KernelPanic);
`;

test('npm pack, install the tarball in a fresh project: a plain .mjs client and a node16 TypeScript consumer', () => {
  // the tarball carries dist/: build it when the sources are newer
  if (!existsSync(join(ROOT, 'dist/.build')) || newest(join(ROOT, 'src')) > statSync(join(ROOT, 'dist/.build')).mtimeMs) sh(process.execPath, ['scripts/build.mjs'], ROOT);
  const work = mkdtempSync(join(tmpdir(), 'luo-pkg-'));
  try {
    const packed = JSON.parse(sh('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT)) as Array<{ filename: string; files: Array<{ path: string }> }>;
    const files = packed[0]!.files.map((f) => f.path);
    assert.ok(files.includes('dist/index.js') && files.includes('dist/index.d.ts') && files.includes('dist/sim.js'), 'compiled code and declarations');
    assert.deepEqual(files.filter((f) => /^(test|bench|\.ci|src)\//.test(f)), [], 'no tests, benchmarks, CI or sources');
    const app = join(work, 'app');
    mkdirSync(app);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', type: 'module', private: true }));
    sh('npm', ['install', '--no-audit', '--no-fund', join(work, packed[0]!.filename)], app);
    const pkg = join(app, 'node_modules/luo');
    assert.ok(existsSync(join(pkg, 'native/build/libluo-preload.so')), 'postinstall built the LD_PRELOAD shim');
    assert.ok(!existsSync(join(app, 'node_modules/tsx')), 'no TypeScript loader at run time');

    // (a) plain JavaScript against the installed `luo serve`
    const socket = join(work, 'luo.sock');
    const daemon = spawnSync('bash', ['-c', `node_modules/.bin/luo serve --socket ${socket} --state-dir ${join(work, 'state')} --ram 1G > ${join(work, 'serve.log')} 2>&1 & echo $!`], { cwd: app, encoding: 'utf8' });
    const pid = Number(daemon.stdout.trim());
    try {
      writeFileSync(join(app, 'client.mjs'), CLIENT);
      // until the daemon listens (however long that takes), or has died
      sh('bash', ['-c', `until [ -S ${socket} ]; do kill -0 ${pid} || exit 1; sleep 0.1; done`], app);
      const out = JSON.parse(sh(process.execPath, ['client.mjs', socket], app)) as { content: string; pos: number; newPid: number; sim: string; plugin: number };
      assert.deepEqual({ content: out.content, pos: out.pos, sim: out.sim, plugin: out.plugin }, { content: 'hello from plain javascript', pos: 5, sim: 'in process', plugin: 12 });
      assert.ok(out.newPid > 0 && out.newPid !== pid, 'the live update went to a new daemon process');
    } finally {
      spawnSync('bash', ['-c', `pkill -KILL -f ${socket} || true`]);
    }
    const version = sh(join(app, 'node_modules/.bin/luo'), ['--help'], app);
    assert.match(version, /Usage: luo/);

    // (b) a TypeScript consumer, moduleResolution node16
    writeFileSync(join(app, 'consumer.ts'), CONSUMER);
    writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'node16', moduleResolution: 'node16', strict: true, noEmit: true, skipLibCheck: false, typeRoots: [join(ROOT, 'node_modules/@types')], types: ['node'] },
      files: ['consumer.ts'],
    }));
    sh(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], app);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
