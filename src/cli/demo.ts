/**
 * `luo demo`, the main job: on an embedded default configuration it boots a simulated 64 GiB host,
 * starts three "VMs" whose guest memory and device state live in memfds of the live-update agent
 * (src/agent), and lets the agent perform three live updates in a row (snapshot and checksum,
 * kexec, retrieve, verify, finish, preserve again). After each update the demo re-reads every
 * written guest page and all device state from the agent's restored fds itself, independently of
 * the agent's checksums; the exit code says whether everything verified (1 when the agent fell
 * back to a cold boot or refused the update, with the reason printed). Then two hops between kernel
 * releases: one that live-updates, one whose new kernel refuses the hand-over (as luo plan says).
 */
import { Machine } from '../kernel/machine.ts';
import type { Kernel } from '../kernel/kernel.ts';
import { abiLabel } from '../kernel/build.ts';
import { SEEK_CUR } from '../handlers/memfd-file.ts';
import { toDts } from '../fdt/dts.ts';
import { LiveUpdateAgent, type FileView, type Phase, type UpdateOptions, type UpdateReport } from '../agent/index.ts';
import { createHash } from 'node:crypto';
import { colorOn } from './style.ts';
import ora, { type Ora } from 'ora';
import { DEMO_HOPS, releaseHop } from './demo-releases.ts';

const GiB = 1n << 30n;
const PAGE = 4096;

interface VmSpec {
  readonly name: string;
  readonly ramBytes: number;
  /** Page indexes of guest RAM written with known data (the rest is never touched). */
  readonly touched: readonly number[];
  readonly stateBytes: number;
}

const VMS: readonly VmSpec[] = [
  { name: 'vm-web', ramBytes: 512 << 20, touched: spread(0, 512 << 8, 97), stateBytes: 24 * 1024 },
  { name: 'vm-db', ramBytes: 1 << 30, touched: spread(1, 1 << 18, 211), stateBytes: 64 * 1024 },
  { name: 'vm-batch', ramBytes: 256 << 20, touched: spread(2, 1 << 16, 53), stateBytes: 8 * 1024 },
];

const TOKEN_RAM = 0x100n;
const TOKEN_STATE = 0x200n;

/** `n` page indexes spread over [0, pages). */
function spread(seed: number, pages: number, n: number): number[] {
  const out = new Set<number>();
  let x = seed * 7919 + 1;
  while (out.size < n) {
    x = (x * 1103515245 + 12345) >>> 0;
    out.add(x % pages);
  }
  return [...out].sort((a, b) => a - b);
}

/** The known contents of page `idx` of a VM (a cheap deterministic pattern with the VM's name in it). */
function pageData(vm: string, idx: number): Uint8Array {
  const b = new Uint8Array(PAGE);
  let x = (idx * 2654435761) >>> 0;
  for (let i = 0; i < PAGE; i += 4) {
    x = (x * 1664525 + 1013904223) >>> 0;
    b[i] = x & 0xff; b[i + 1] = (x >>> 8) & 0xff; b[i + 2] = (x >>> 16) & 0xff; b[i + 3] = x >>> 24;
  }
  b.set(new TextEncoder().encode(`${vm}:${idx}`), 0);
  return b;
}

function stateData(vm: string, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + vm.length) & 0xff;
  return b;
}

function fmtMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
}
function fmtBytes(n: number): string {
  if (n >= 1 << 30) return `${(n / (1 << 30)).toFixed(2)} GiB`;
  if (n >= 1 << 20) return `${(n / (1 << 20)).toFixed(1)} MiB`;
  if (n >= 1 << 10) return `${(n / (1 << 10)).toFixed(1)} KiB`;
  return `${n} B`;
}

/**
 * The checksum the agent records before the kexec and compares after it (its FileView reads
 * through the agent's fds): every written guest page of the RAM memfd, every byte of device state.
 */
function vmChecksum(vm: VmSpec): (f: FileView) => string {
  return (f) => {
    const h = createHash('sha256');
    h.update(`${f.size}:`);
    if (f.token === TOKEN_RAM) for (const idx of vm.touched) h.update(f.pread(idx * PAGE, PAGE));
    else h.update(f.pread(0, f.size));
    return `sha256:${h.digest('hex')}`;
  };
}

/**
 * Starts the VMs: their guest RAM (in 2 MiB folios: shmem_enabled=always while it is created) and
 * device state in memfds of the agent's process, then one adopted workload (session) per VM.
 */
function startVms(agent: LiveUpdateAgent, problems: string[]): boolean {
  for (const vm of VMS) {
    const prev = agent.kernel.setShmemEnabled('always');
    let ram: number;
    try {
      ram = agent.createMemfd(`${vm.name}-ram`, { size: vm.ramBytes, writes: vm.touched.map((idx) => ({ at: idx * PAGE, data: pageData(vm.name, idx) })) });
    } catch (e) {
      problems.push(`${vm.name}: guest RAM: ${e instanceof Error ? e.message : String(e)}`);
      return false;
    } finally {
      agent.kernel.setShmemEnabled(prev);
    }
    let state: number;
    try {
      state = agent.createMemfd(`${vm.name}-state`, { writes: [{ at: 0, data: stateData(vm.name, vm.stateBytes) }], pos: vm.stateBytes >> 1 });
    } catch (e) {
      problems.push(`${vm.name}: device state: ${e instanceof Error ? e.message : String(e)}`);
      return false;
    }
    const r = agent.adopt({
      name: vm.name,
      files: [{ token: TOKEN_RAM, fd: ram, label: 'guest RAM' }, { token: TOKEN_STATE, fd: state, label: 'device state' }],
      checksum: vmChecksum(vm),
    });
    if (!r.ok) {
      for (const e of r.errors) problems.push(`${vm.name}: the agent could not adopt it: ${e.step}${e.errno ? ` ${e.errno}` : ''}: ${e.message}`);
      return false;
    }
  }
  return true;
}

/**
 * The demo's own check, independent of the agent's checksums: every written guest page, an
 * untouched page, the RAM size, all device state and its file position, read back through the
 * fds the agent restored. Returns what was compared and found equal.
 */
function checkVms(agent: LiveUpdateAgent, u: number, problems: string[]): { pages: number; stateBytes: number } {
  const p = agent.process;
  let pages = 0;
  let stateBytes = 0;
  for (const vm of VMS) {
    const w = agent.workload(vm.name);
    const ram = w?.files.find((f) => f.token === TOKEN_RAM)?.fd ?? -1;
    const state = w?.files.find((f) => f.token === TOKEN_STATE)?.fd ?? -1;
    if (ram < 0 || state < 0) {
      problems.push(`live update ${u}: ${vm.name}: the agent has no restored ${ram < 0 ? 'guest RAM' : 'device state'} fd`);
      continue;
    }
    const st = p.fstat(ram);
    const size = st === -1 ? -1 : st.size;
    if (size !== vm.ramBytes) problems.push(`live update ${u}: ${vm.name}: guest RAM size ${size}, expected ${vm.ramBytes}`);
    const buf = new Uint8Array(PAGE);
    for (const idx of vm.touched) {
      const n = p.pread(ram, buf, idx * PAGE);
      if (n !== PAGE || !Buffer.from(buf).equals(pageData(vm.name, idx))) {
        problems.push(`live update ${u}: ${vm.name}: guest page ${idx} differs${n < 0 ? ` (pread: ${p.errnoName})` : ''}`);
        break;
      }
      pages++;
    }
    const untouched = (vm.touched[0] ?? 0) + 1;
    if (!vm.touched.includes(untouched)) {
      const n = p.pread(ram, buf, untouched * PAGE);
      if (n !== PAGE || !buf.every((b) => b === 0)) problems.push(`live update ${u}: ${vm.name}: untouched guest page ${untouched} is not zero`);
    }
    const sbuf = new Uint8Array(vm.stateBytes);
    const n = p.pread(state, sbuf, 0);
    if (n !== vm.stateBytes || !Buffer.from(sbuf).equals(stateData(vm.name, vm.stateBytes))) problems.push(`live update ${u}: ${vm.name}: device state differs`);
    else stateBytes += vm.stateBytes;
    const pos = p.lseek(state, 0, SEEK_CUR);
    if (pos !== vm.stateBytes >> 1) problems.push(`live update ${u}: ${vm.name}: device state position ${pos}, expected ${vm.stateBytes >> 1}`);
  }
  return { pages, stateBytes };
}

/** The agent's phases summed by name (kexec.* come from the new kernel's kexecStats). */
function phaseMs(phases: readonly Phase[], name: string): number {
  return phases.filter((p) => p.name === name).reduce((a, p) => a + p.ms, 0);
}

/** Why an update did not go through, from the agent's report. */
function whyNot(r: UpdateReport): string {
  const e = r.reason;
  const what = r.outcome === 'fell-back'
    ? `the agent fell back to a cold boot of ${r.to.release}${r.restartRequired.length ? ` (restart from scratch: ${r.restartRequired.join(', ')})` : ''}`
    : 'the running kernel refused the update (nothing changed; it may be retried)';
  return `${what}: ${e ? `${e.workload ? `${e.workload}: ` : ''}${e.step}${e.errno ? ` ${e.errno}` : ''}: ${e.message}` : 'no reason given'}`;
}

/** Progress of the demo, for a watcher such as `luo dashboard --demo` (awaited: it may pace the demo). */
export type DemoEvent =
  | { kind: 'booted' | 'started' | 'kexeced'; machine: Machine; update: number; message: string }
  | { kind: 'updated'; machine: Machine; update: number; message: string; phases: Array<[string, number]>; verifyMs: number; preservedPages: number; blocks: number }
  | { kind: 'done'; machine: Machine; update: number; message: string; code: number; problems: string[] };

export interface DemoOptions {
  updates?: number;
  quiet?: boolean;
  onProgress?: (ev: DemoEvent) => void | Promise<void>;
  /** Before live update `n` (tests): may break the running kernel or a VM, or return what to kexec into. */
  beforeUpdate?: (n: number, agent: LiveUpdateAgent) => UpdateOptions | void;
}

export async function runDemo(opts: DemoOptions = {}): Promise<number> {
  const updates = opts.updates ?? 3;
  const publish = async (ev: DemoEvent): Promise<void> => { await opts.onProgress?.(ev); };
  // A spinner on the long steps, on a terminal only (a pipe or a log gets the plain report).
  let spinner: Ora | undefined;
  const step = (text: string): void => {
    if (opts.quiet || !process.stdout.isTTY || !(process.stdout.columns > 0)) return;
    spinner = ora({ text, stream: process.stdout, discardStdin: false, ...(colorOn() ? {} : { color: false as const }) }).start();
  };
  const stepDone = (): void => {
    spinner?.stop();
    spinner = undefined;
  };
  const out = (s = '') => { if (!opts.quiet) { stepDone(); console.log(s); } };
  const problems: string[] = [];
  const t0 = performance.now();
  out('luo demo: a simulated 64 GiB host, three VMs in memfds, three live updates in a row by the live-update agent');
  out();
  step('booting a 64 GiB host');
  const m = new Machine({ ramSize: 64n * GiB });
  let k = m.kernel;
  out(`booted ${k.build.release} (${abiLabel(k.build.abi)}) with "${k.cmdline.raw}"`);
  out(`KHO scratch areas: ${k.scratch.map((s) => `0x${s.addr.toString(16)}+${fmtBytes(Number(s.size))}`).join(', ')}`);
  await publish({ kind: 'booted', machine: m, update: 0, message: `booted ${k.build.release} (cold)` });
  step('starting three VMs; the agent preserves their memfds');
  const agent = new LiveUpdateAgent(m);
  const started = startVms(agent, problems);
  const guest = VMS.reduce((a, v) => a + v.ramBytes + v.stateBytes, 0);
  if (started) {
    out(`started ${VMS.length} VMs: ${VMS.map((v) => `${v.name} (${fmtBytes(v.ramBytes)} RAM, ${v.touched.length} pages written)`).join(', ')}`);
    out(`the agent (pid ${agent.process.pid}) adopted them: ${VMS.length} sessions, ${VMS.length * 2} memfds, ${fmtBytes(guest)} of guest memory in ${k.kho!.preservedBlocks} KHO blocks`);
    await publish({ kind: 'started', machine: m, update: 0, message: `started ${VMS.length} VMs; ${VMS.length} sessions preserved` });
  }
  for (let u = 1; started && u <= updates; u++) {
    out();
    out(`── live update ${u} ─────────────────────────────────────────────`);
    const uo = opts.beforeUpdate?.(u, agent) ?? {};
    step(`live update ${u}: the agent freezes, serializes, kexecs, restores and verifies every VM`);
    const before = m.kernel;
    const r = agent.update(uo);
    k = agent.kernel;
    // The new kernel's kexecStats (there is none after a refusal, or a fall-back's cold boot).
    const st = k !== before && !r.to.coldBooted ? k.kexecStats : undefined;
    if (st) await publish({ kind: 'kexeced', machine: m, update: u, message: `live update ${u}: kernel booted from the hand-over` });
    if (r.outcome !== 'updated') {
      problems.push(`live update ${u}: ${whyNot(r)}`);
      for (const e of r.errors.slice(1)) problems.push(`live update ${u}: also: ${e.workload ? `${e.workload}: ` : ''}${e.step}${e.errno ? ` ${e.errno}` : ''}: ${e.message}`);
      out(`live update ${u} did not go through: ${whyNot(r)}`);
      break;
    }
    for (const e of r.errors) problems.push(`live update ${u}: ${e.workload ? `${e.workload}: ` : ''}${e.step}${e.errno ? ` ${e.errno}` : ''}: ${e.message}`);
    if (!st || !k.handover) {
      problems.push(`live update ${u}: the new kernel found no hand-over`);
      break;
    }
    const blocks = k.kho?.incoming?.blocks ?? 0;
    out(`kernel #${k.luo!.incomingNum + 1} is running; liveupdate_num ${k.luo!.incomingNum}, kexec count ${k.kho!.incoming?.kexecCount ?? 0}`);
    out(`handed over ${fmtBytes(st.preservedPages * PAGE)} in ${blocks} preserved blocks, tracker ${st.trackerPages} pages`);
    const files = r.workloads.reduce((a, w) => a + w.files.length, 0);
    const verified = r.workloads.reduce((a, w) => a + w.files.filter((f) => f.verified).length, 0);
    out(`the agent (generation ${r.generation}) retrieved its manifest and ${r.workloads.length} sessions, verified ${verified} of ${files} files by checksum, finished them, and preserved them again:`);
    for (const w of r.workloads) {
      const desc = w.files.map((f) => `${f.label ?? f.token} ${fmtBytes(f.expected.size)}${f.expected.pos ? ` (position ${f.expected.pos})` : ''}`).join(', ');
      out(`  ${w.name.padEnd(9)} ${desc}: ${w.status}${w.readopted ? ', preserved again' : ', NOT preserved again'}`);
      if (w.status !== 'restored' || !w.readopted || w.files.some((f) => !f.verified)) problems.push(`live update ${u}: ${w.name}: ${w.status}, ${w.readopted ? '' : 'not '}preserved again, ${w.files.filter((f) => !f.verified).length} file(s) not verified`);
    }
    out('blackout:');
    const rows: Array<[string, number]> = [
      ['freeze + serialize (LUO reboot path)', phaseMs(r.phases, 'kexec.serialize')],
      ['kexec (scratch segment, poison the rest)', phaseMs(r.phases, 'kexec.handover')],
      ['boot + KHO walk and reserve', phaseMs(r.phases, 'kexec.boot')],
      ['LUO restore (first open)', phaseMs(r.phases, 'open')],
      ['retrieve', phaseMs(r.phases, 'retrieve')],
      ['verify (agent checksums)', phaseMs(r.phases, 'verify')],
      ['finish', phaseMs(r.phases, 'finish')],
    ];
    for (const [what, ms] of rows) out(`  ${what.padEnd(44)} ${fmtMs(ms).padStart(10)}`);
    out(`  ${'total'.padEnd(44)} ${fmtMs(rows.reduce((a, x) => a + x[1], 0)).padStart(10)}`);
    out(`  (outside it: the agent's snapshot and manifest ${fmtMs(phaseMs(r.phases, 'prepare'))} before, preserving again ${fmtMs(phaseMs(r.phases, 'readopt'))} after)`);
    step(`live update ${u}: re-reading every written guest page and all device state`);
    const tv = performance.now();
    const nProblems = problems.length;
    const seen = checkVms(agent, u, problems);
    const verifyMs = performance.now() - tv;
    if (problems.length === nProblems) out(`verified every written guest page and all device state: the agent's checksums, then the demo re-read ${seen.pages} written pages (${fmtBytes(seen.pages * PAGE)}) and ${fmtBytes(seen.stateBytes)} of device state from the restored fds (${fmtMs(verifyMs)})`);
    else out(`NOT verified: ${problems.length - nProblems} problem(s) in the guest pages or device state`);
    await publish({ kind: 'updated', machine: m, update: u, message: `live update ${u} verified`, phases: rows, verifyMs, preservedPages: st.preservedPages, blocks });
  }
  out();
  out('hand-over tree the last kernel received (KHO root FDT):');
  if (k.kho?.incoming) out(toDts(k.kho.incoming.root.blob).trimEnd().split('\n').map((l) => `  ${l}`).join('\n'));
  else out('  (none: this kernel was not booted by a live update)');
  out();
  out('── across releases (luo releases, luo plan) ──────────────────────');
  step('release hops: what luo plan predicts, then what the agent gets');
  for (const [from, to] of DEMO_HOPS) {
    const h = releaseHop(from, to);
    out(`  ${`${from} -> ${to}`.padEnd(24)} plan: ${h.predicted.padEnd(12)} agent: ${h.happened}`);
    if (!h.agreed) problems.push(`release hop ${from} -> ${to}: luo plan said ${h.predicted}, the agent got ${h.happened}`);
  }
  const host = process.memoryUsage().rss;
  out();
  out(`host memory ${fmtBytes(host)} for ${fmtBytes(Number(m.memory.size))} of simulated RAM; ${fmtMs(performance.now() - t0)} in all`);
  const code = problems.length ? 1 : 0;
  await publish({ kind: 'done', machine: m, update: updates, message: code ? `FAILED: ${problems.length} problem(s)` : 'every preserved byte verified after each live update', code, problems });
  stepDone();
  if (problems.length) {
    console.error(`\nFAILED: ${problems.length} problem(s):`);
    for (const p of problems) console.error(`  - ${p}`);
    return 1;
  }
  out('OK: every preserved byte verified after each live update');
  return 0;
}
