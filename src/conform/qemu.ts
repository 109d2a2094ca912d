/**
 * One program on a real kernel: QEMU boots the kernel with the program's initramfs (guest.ts), the
 * init runs stage 1, kexecs into stage 2 and so on; the serial console is read as it comes and
 * split into each stage's transcript. KVM when the host has it, TCG otherwise. Nothing waits on a
 * wall clock but the stall limit: the run is given up only after the console has said nothing for
 * that long (a hung guest), however slow the machine.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { guestInitramfs, type GuestTools, MARK, STAGE_ARG } from './guest.ts';
import type { Program } from './program.ts';

export interface StageTranscript {
  /** The interpreter's lines (HOLDER lines left out). */
  readonly lines: string[];
  /** lu_script's exit status (undefined: the stage never ended, e.g. a panic). */
  readonly rc?: number;
}

export interface KernelRun {
  readonly stages: StageTranscript[];
  /** How the run ended: every stage ran, or what stopped it. */
  readonly outcome: 'done' | 'panic' | 'kexec-failed' | 'stalled' | 'exited';
  /** The kernel's panic line, when it panicked. */
  readonly panic?: string;
  /** The last lines of the console, for a report. */
  readonly tail: string[];
}

export interface QemuOptions {
  readonly kernel: string;
  readonly tools: GuestTools;
  /** Seconds of console silence after which the guest is taken for hung (default 600). */
  readonly stallSeconds?: number;
  /** Extra kernel command-line words. */
  readonly cmdline?: string;
  readonly qemu?: string;
  /** QEMU's accelerator: tcg (default) or kvm (kvmWorks() says whether it works here). */
  readonly accel?: 'tcg' | 'kvm';
  /** Where the full console log goes, if anywhere. */
  readonly logFile?: string;
}

/** The command line every stage starts from (the init adds the stage). */
export const BASE_CMDLINE = 'console=ttyS0 kho=on liveupdate=on nokaslr panic=-1 loglevel=1';

/** A transcript line of lu_script: "<n> <op> r=<ret> e=<errno>[ extra]". */
const TRANSCRIPT = /^\d+ \S+ r=-?\d+ e=\S+/;

/** Splits a console log into stages (pure; the run feeds it lines as they come). */
export class ConsoleParser {
  readonly stages: StageTranscript[] = [];
  private current: { lines: string[]; rc?: number } | undefined;
  panic: string | undefined;
  kexecFailed = false;
  done = false;
  readonly tail: string[] = [];

  push(raw: string): void {
    const line = raw.replace(/\r$/, '');
    this.tail.push(line);
    if (this.tail.length > 40) this.tail.shift();
    const b = MARK.begin.exec(line);
    if (b) {
      this.current = { lines: [] };
      this.stages[Number(b[1]) - 1] = this.current;
      return;
    }
    const e = MARK.end.exec(line);
    if (e && this.current) {
      this.current.rc = Number(e[2]);
      this.current = undefined;
      return;
    }
    if (line === MARK.kexecFailed) this.kexecFailed = true;
    else if (line === MARK.done) this.done = true;
    else if (/Kernel panic - not syncing/.test(line)) this.panic ??= line.replace(/^\[[^\]]*\]\s*/, '');
    else if (this.current && TRANSCRIPT.test(line)) this.current.lines.push(line);
  }
}

/**
 * Whether KVM runs this kernel here: /dev/kvm opens read-write and a probe boot (no initramfs: it
 * panics at once and QEMU exits) prints the kernel's banner. A /dev/kvm that exists but hangs a
 * guest (nested virtualisation without the features) prints nothing: after `waitSeconds` the
 * probe gives up and TCG is used, which is slower but never wrong.
 */
export function kvmWorks(kernel: string, qemu = 'qemu-system-x86_64', waitSeconds = 20): Promise<boolean> {
  try {
    closeSync(openSync('/dev/kvm', 'r+'));
  } catch {
    return Promise.resolve(false);
  }
  return new Promise((resolve) => {
    const child = spawn(qemu, ['-accel', 'kvm', '-m', '256M', '-display', 'none', '-nodefaults', '-no-reboot', '-serial', 'stdio', '-monitor', 'none', '-kernel', kernel, '-append', 'console=ttyS0 panic=-1'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    let settled = false;
    const finish = (ok: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), waitSeconds * 1000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (out.includes('Linux version')) finish(true);
    });
    child.on('exit', () => finish(out.includes('Linux version')));
    child.on('error', () => finish(false));
  });
}

/** Boots `prog` on the kernel and returns its stages' transcripts. */
export async function runOnKernel(prog: Program, opts: QemuOptions): Promise<KernelRun> {
  const dir = mkdtempSync(join(tmpdir(), 'luo-conform-qemu-'));
  const initrd = join(dir, 'initrd.cpio');
  writeFileSync(initrd, guestInitramfs(opts.tools, opts.kernel, prog));
  const args = [
    '-accel', opts.accel ?? 'tcg', '-m', '1G', '-smp', '1', '-display', 'none', '-nodefaults', '-no-reboot',
    '-serial', 'stdio', '-monitor', 'none', '-kernel', opts.kernel, '-initrd', initrd,
    '-append', `${BASE_CMDLINE}${opts.cmdline ? ` ${opts.cmdline}` : ''} ${STAGE_ARG}=1`,
  ];
  const parser = new ConsoleParser();
  const log: string[] = [];
  const stallMs = (opts.stallSeconds ?? 600) * 1000;
  try {
    const outcome = await new Promise<KernelRun['outcome']>((resolve, reject) => {
      const child = spawn(opts.qemu ?? 'qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let partial = '';
      let stalled = false;
      let timer: NodeJS.Timeout | undefined;
      const arm = (): void => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          stalled = true;
          child.kill('SIGKILL');
        }, stallMs);
      };
      arm();
      child.stdout.setEncoding('latin1');
      child.stdout.on('data', (d: string) => {
        arm();
        const parts = (partial + d).split('\n');
        partial = parts.pop()!;
        for (const l of parts) {
          parser.push(l);
          if (opts.logFile) log.push(l);
        }
      });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`luo conform: cannot run ${opts.qemu ?? 'qemu-system-x86_64'} (apt-get install qemu-system-x86): ${e.message}`));
      });
      child.on('exit', () => {
        clearTimeout(timer);
        if (partial) parser.push(partial);
        if (stderr.trim()) for (const l of stderr.trim().split('\n').filter((x) => !/warning: host doesn't support requested feature/.test(x))) parser.tail.push(`qemu: ${l}`);
        resolve(stalled ? 'stalled' : parser.panic ? 'panic' : parser.kexecFailed ? 'kexec-failed' : parser.done ? 'done' : 'exited');
      });
    });
    if (opts.logFile) writeFileSync(opts.logFile, `${log.join('\n')}\n`);
    return { stages: parser.stages, outcome, ...(parser.panic ? { panic: parser.panic } : {}), tail: parser.tail };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
