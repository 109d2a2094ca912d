/**
 * What runs inside the QEMU guest of `luo conform`: a static busybox, our static C interpreter of
 * generated programs (native/conformance/lu_script.c) and kexec helper (luoprobe.c `kexec`), the
 * kernel itself (the kexec target), the program's stages, and an init that runs the stage the
 * command line names, prints its transcript between markers on the serial console, then kexecs
 * into the next stage with an initramfs it packs from its own files.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LuoError } from '../errno.ts';
import { newcArchive, type CpioEntry } from './cpio.ts';
import { type Program, stageText } from './program.ts';

/** The source checkout's (or the package's) native/ directory. */
export const NATIVE_DIR = fileURLToPath(new URL('../../native/', import.meta.url));

/** Serial-console markers the init prints around each stage (parsed by qemu.ts). */
export const MARK = {
  begin: /^=== CONFORM STAGE (\d+) BEGIN\s*$/,
  end: /^=== CONFORM STAGE (\d+) END rc=(\d+)\s*$/,
  kexecFailed: '=== CONFORM KEXEC FAILED',
  done: '=== CONFORM DONE',
} as const;

/** The kernel command-line word that tells the init which stage it is. */
export const STAGE_ARG = 'luo_conform_stage';

export interface GuestTools {
  readonly busybox: string;
  readonly luScript: string;
  readonly luoprobe: string;
}

/** A statically linked busybox: Debian's busybox-static installs it as /bin/busybox. */
export function findBusybox(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) {
    if (!existsSync(p)) continue;
    const ldd = spawnSync('ldd', [p], { encoding: 'utf8' });
    if (/not a dynamic executable|statically linked/.test(`${ldd.stdout}${ldd.stderr}`)) return p;
  }
  throw new LuoError('ENOENT', 'luo conform: the guest needs a statically linked busybox (apt-get install busybox-static)');
}

/**
 * Builds the guest's C programs statically into `dir` (glibc static: the guest has no libc), once:
 * an existing build newer than its sources is kept.
 */
export function buildGuestTools(dir: string): GuestTools {
  mkdirSync(dir, { recursive: true });
  const cc = process.env['CC'] ?? 'gcc';
  const build = (name: string): string => {
    const src = join(NATIVE_DIR, 'conformance', `${name}.c`);
    const out = join(dir, name);
    if (!existsSync(src)) throw new LuoError('ENOENT', `luo conform: ${src} is missing from this luo build`);
    const r = spawnSync(cc, ['-std=gnu11', '-O2', '-static', '-Wno-unused-result', '-I', join(NATIVE_DIR, 'include'), '-o', `${out}.tmp`, src], { encoding: 'utf8' });
    if (r.error || r.status !== 0) {
      throw new LuoError('EIO', `luo conform: building ${name} statically failed (needs ${cc} and libc6-dev): ${r.error?.message ?? r.stderr.trim()}`);
    }
    renameSync(`${out}.tmp`, out);
    return out;
  };
  return { busybox: findBusybox(), luScript: build('lu_script'), luoprobe: build('luoprobe') };
}

/** The guest's /init: our own script (busybox sh). */
export function initScript(): string {
  return `#!/bin/busybox sh
# luo conform guest init: run the stage the command line names, print its transcript between
# markers, then kexec into the next stage (or power off after the last).
B=/bin/busybox
$B mkdir -p /proc /sys /dev /tmp
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
STAGE=1
for w in $($B cat /proc/cmdline); do
  case "$w" in ${STAGE_ARG}=*) STAGE="\${w#*=}" ;; esac
done
LAST=$($B cat /prog/stages)
HOLD=
[ "$STAGE" -lt "$LAST" ] && HOLD=--hold
echo "=== CONFORM STAGE $STAGE BEGIN"
/lu_script /prog/stage$STAGE $HOLD
echo "=== CONFORM STAGE $STAGE END rc=$?"
if [ "$STAGE" -lt "$LAST" ]; then
  cd /
  { echo init; echo kernel; echo lu_script; echo luoprobe; echo dev; echo proc; echo sys; echo tmp; $B find bin prog; } | $B cpio -o -H newc > /tmp/next.cpio 2>/dev/null
  CMD=$($B sed "s/ *${STAGE_ARG}=[0-9]*//" /proc/cmdline)
  /luoprobe kexec /kernel /tmp/next.cpio "$CMD ${STAGE_ARG}=$((STAGE + 1))"
  echo "${MARK.kexecFailed}"
fi
echo "${MARK.done}"
$B reboot -f
`;
}

/** The initramfs of one program: tools, kernel, stages, init, /dev/console. */
export function guestInitramfs(tools: GuestTools, kernel: string, prog: Program): Uint8Array {
  const file = (path: string, data: Uint8Array, mode = 0o755): CpioEntry => ({ kind: 'file', path, data, mode });
  const enc = new TextEncoder();
  const entries: CpioEntry[] = [
    { kind: 'dir', path: 'bin' },
    file('bin/busybox', readFileSync(tools.busybox)),
    { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
    { kind: 'dir', path: 'dev' },
    { kind: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    { kind: 'dir', path: 'proc' },
    { kind: 'dir', path: 'sys' },
    { kind: 'dir', path: 'tmp', mode: 0o1777 },
    { kind: 'dir', path: 'prog' },
    file('prog/stages', enc.encode(`${prog.stages.length}\n`), 0o644),
    ...prog.stages.map((ops, i) => file(`prog/stage${i + 1}`, enc.encode(stageText(ops)), 0o644)),
    file('lu_script', readFileSync(tools.luScript)),
    file('luoprobe', readFileSync(tools.luoprobe)),
    file('kernel', readFileSync(kernel), 0o644),
    file('init', enc.encode(initScript())),
  ];
  return newcArchive(entries);
}
