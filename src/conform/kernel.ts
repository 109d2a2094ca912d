/**
 * `luo conform kernel`: a minimal bootable kernel with KHO and LUO from a kernel source tree —
 * tinyconfig, then native/conform/luo.fragment merged in, built out of tree (the source stays
 * clean). With no source given, Debian's linux-source-7.3 (trixie-backports) is fetched through a
 * private apt configuration (nothing on the host's apt setup changes) and unpacked in the cache.
 * A build is reused: kbuild rebuilds only what changed, and a fetched source that is already
 * built is not touched again.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { LuoError } from '../errno.ts';
import { NATIVE_DIR } from './guest.ts';

export const FRAGMENT = join(NATIVE_DIR, 'conform', 'luo.fragment');
/** Debian's package of the 7.3 source and where it is (trixie-backports, as the fixtures' kernel). */
export const DEBIAN_SOURCE = { pkg: 'linux-source-7.3', suite: 'trixie-backports', mirror: 'http://deb.debian.org/debian' } as const;

/** luo's cache: $XDG_CACHE_HOME/luo/conform, else ~/.cache/luo/conform. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env['XDG_CACHE_HOME'] || join(env['HOME'] ?? homedir(), '.cache'), 'luo', 'conform');
}

export interface KernelBuildResult {
  readonly bzImage: string;
  readonly version: string;
  readonly source: string;
  /** make was run (false: the cached build of a fetched source was reused as it was). */
  readonly built: boolean;
  readonly seconds: number;
}

export interface KernelBuildOptions {
  /** A kernel source tree; default: fetch Debian's linux-source-7.3 into the cache. */
  readonly source?: string;
  /** The build directory (default: <cache>/build-<hash of the source path>). */
  readonly out?: string;
  readonly cacheDir?: string;
  readonly jobs?: number;
  /** Progress lines (make's own output is kept for errors). */
  readonly log?: (line: string) => void;
}

function run(cmd: string, args: string[], opts: { cwd?: string; log?: (l: string) => void } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const take = (d: Buffer): void => {
      out += d.toString();
      if (out.length > 1 << 20) out = out.slice(-(1 << 19));
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', (e) => reject(new LuoError('ENOENT', `${cmd}: ${e.message}`)));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new LuoError('EIO', `${cmd} ${args.join(' ')} failed (${code}):\n${out.trim().split('\n').slice(-25).join('\n')}`))));
  });
}

/** Fetches and unpacks Debian's linux-source-7.3 under `cache`; returns the source tree. */
export async function fetchDebianSource(cache: string, log: (l: string) => void = () => {}): Promise<string> {
  const srcRoot = join(cache, 'debian-source');
  const unpacked = existsSync(srcRoot) ? readdirSync(srcRoot).find((d) => d.startsWith('linux-source-') && existsSync(join(srcRoot, d, 'Makefile'))) : undefined;
  if (unpacked) return join(srcRoot, unpacked);
  if (spawnSync('sh', ['-c', 'command -v apt-get'], { encoding: 'utf8' }).status !== 0) {
    throw new LuoError('ENOENT', `luo conform kernel: no --source given and no apt-get to fetch Debian's ${DEBIAN_SOURCE.pkg}; pass --source DIR (a kernel tree with KHO and LUO, 6.19 or later)`);
  }
  const apt = join(cache, 'apt');
  mkdirSync(join(apt, 'lists', 'partial'), { recursive: true });
  mkdirSync(join(apt, 'cache', 'archives', 'partial'), { recursive: true });
  writeFileSync(join(apt, 'sources.list'), `deb ${DEBIAN_SOURCE.mirror} ${DEBIAN_SOURCE.suite} main\n`);
  const o = ['-o', `Dir::Etc::SourceList=${join(apt, 'sources.list')}`, '-o', 'Dir::Etc::SourceParts=/dev/null', '-o', `Dir::State::Lists=${join(apt, 'lists')}`, '-o', `Dir::Cache=${join(apt, 'cache')}`, '-o', 'APT::Sandbox::User=root'];
  log(`fetching ${DEBIAN_SOURCE.pkg} from ${DEBIAN_SOURCE.suite} (about 170 MB)`);
  await run('apt-get', ['-q', ...o, 'update']);
  await run('apt-get', ['-q', ...o, 'download', DEBIAN_SOURCE.pkg], { cwd: apt });
  const deb = readdirSync(apt).find((f) => f.startsWith(`${DEBIAN_SOURCE.pkg}_`) && f.endsWith('.deb'));
  if (!deb) throw new LuoError('EIO', `luo conform kernel: apt-get download left no ${DEBIAN_SOURCE.pkg} package in ${apt}`);
  const pkg = join(cache, 'debian-pkg');
  await run('dpkg-deb', ['-x', join(apt, deb), pkg]);
  const tarball = readdirSync(join(pkg, 'usr', 'src')).find((f) => /^linux-source-.*\.tar\.xz$/.test(f));
  if (!tarball) throw new LuoError('EIO', `luo conform kernel: ${deb} holds no source tarball`);
  mkdirSync(srcRoot, { recursive: true });
  log(`unpacking ${tarball}`);
  await run('tar', ['-xf', join(pkg, 'usr', 'src', tarball), '-C', srcRoot]);
  const dir = readdirSync(srcRoot).find((d) => d.startsWith('linux-source-'));
  if (!dir) throw new LuoError('EIO', `luo conform kernel: ${tarball} did not unpack to linux-source-*`);
  return join(srcRoot, dir);
}

/** Builds (or reuses) the kernel; the bzImage path and version. */
export async function buildKernel(opts: KernelBuildOptions = {}): Promise<KernelBuildResult> {
  const t0 = Date.now();
  const log = opts.log ?? (() => {});
  const cache = opts.cacheDir ?? defaultCacheDir();
  mkdirSync(cache, { recursive: true });
  const fetched = opts.source === undefined;
  const source = realpathSync(opts.source ?? (await fetchDebianSource(cache, log)));
  if (!existsSync(join(source, 'Makefile')) || !existsSync(join(source, 'kernel'))) throw new LuoError('ENOENT', `luo conform kernel: ${source} is not a kernel source tree`);
  if (!existsSync(join(source, 'kernel', 'liveupdate'))) throw new LuoError('EOPNOTSUPP', `luo conform kernel: ${source} has no kernel/liveupdate (LUO came with 6.19)`);
  if (existsSync(join(source, '.config'))) throw new LuoError('EINVAL', `luo conform kernel: ${source} has a .config; the build is out of tree and kbuild needs a clean source (make mrproper)`);
  const fragment = readFileSync(FRAGMENT, 'utf8');
  const key = createHash('sha256').update(source).update('\0').update(fragment).digest('hex').slice(0, 16);
  const out = opts.out ?? join(cache, `build-${key}`);
  mkdirSync(out, { recursive: true });
  const bzImage = join(out, 'arch', 'x86', 'boot', 'bzImage');
  const stampFile = join(out, 'luo-conform.json');
  const stamp = existsSync(stampFile) ? (JSON.parse(readFileSync(stampFile, 'utf8')) as { key?: string; version?: string }) : {};
  const version = (await run('make', ['-s', '-C', source, 'kernelversion'])).trim().split('\n').at(-1) ?? '?';
  if (fetched && stamp.key === key && existsSync(bzImage)) return { bzImage, version, source, built: false, seconds: (Date.now() - t0) / 1000 };
  const make = (...args: string[]) => run('make', ['-C', source, `O=${out}`, ...args]);
  if (stamp.key !== key || !existsSync(join(out, '.config'))) {
    log(`configuring ${version}: tinyconfig + ${FRAGMENT}`);
    await make('tinyconfig');
    await run(join(source, 'scripts', 'kconfig', 'merge_config.sh'), ['-m', '-O', out, join(out, '.config'), FRAGMENT], { cwd: out });
    await make('olddefconfig');
    const config = readFileSync(join(out, '.config'), 'utf8');
    const missing = ['CONFIG_KEXEC_HANDOVER=y', 'CONFIG_LIVEUPDATE=y', 'CONFIG_LIVEUPDATE_MEMFD=y', 'CONFIG_KEXEC_FILE=y'].filter((o) => !config.includes(`\n${o}\n`));
    if (missing.length) throw new LuoError('EOPNOTSUPP', `luo conform kernel: ${version} does not take ${missing.join(', ')} (its Kconfig lacks them or their dependencies)`);
  }
  const jobs = opts.jobs ?? 2;
  log(`building ${version} in ${out} (make -j${jobs} bzImage; the first build takes a few minutes)`);
  await make(`-j${jobs}`, 'bzImage');
  writeFileSync(stampFile, `${JSON.stringify({ key, version, source }, null, 2)}\n`);
  return { bzImage, version, source, built: true, seconds: (Date.now() - t0) / 1000 };
}

/** The bzImage of the default build (fetched Debian source), when one exists. */
export function defaultKernel(cacheDir = defaultCacheDir()): string | undefined {
  if (!existsSync(cacheDir)) return undefined;
  for (const d of readdirSync(cacheDir)) {
    const p = join(cacheDir, d, 'arch', 'x86', 'boot', 'bzImage');
    if (d.startsWith('build-') && existsSync(p) && existsSync(join(cacheDir, d, 'luo-conform.json'))) return p;
  }
  return undefined;
}
