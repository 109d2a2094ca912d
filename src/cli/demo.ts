/**
 * `luo demo`, the main job: on an embedded default configuration it boots a simulated 64 GiB host,
 * starts three "VMs" whose guest memory and device state live in memfds, and performs three live
 * updates in a row the way a live-update agent would (preserve, kexec, retrieve, verify, finish,
 * preserve again). Every preserved byte is checked after each update; the exit code says whether
 * everything verified.
 */
import { Machine } from '../kernel/machine.ts';
import type { Kernel } from '../kernel/kernel.ts';
import { MemfdFile, memfdCreate, SEEK_SET } from '../handlers/memfd-file.ts';
import { toDts } from '../fdt/dts.ts';
import { LuoError } from '../errno.ts';
import ora, { type Ora } from 'ora';

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

/** Starts the VMs: one session each, guest RAM and device state memfds preserved. */
function startVms(k: Kernel): void {
  const luo = k.luo!;
  for (const vm of VMS) {
    const s = luo.createSession(vm.name);
    const ctx = { ...k.memfd, shmemHuge: 'always' as const }; // guest RAM in 2 MiB folios
    const ram = memfdCreate(ctx, `${vm.name}-ram`, 0);
    ram.ftruncate(vm.ramBytes);
    for (const idx of vm.touched) ram.pwrite(pageData(vm.name, idx), idx * PAGE);
    const state = memfdCreate(k.memfd, `${vm.name}-state`, 0);
    state.write(stateData(vm.name, vm.stateBytes));
    state.lseek(vm.stateBytes >> 1, SEEK_SET);
    luo.sessions.preserveFile(s, TOKEN_RAM, ram);
    luo.sessions.preserveFile(s, TOKEN_STATE, state);
    ram.close();
    state.close();
  }
}

interface Phases { retrieveMs: number; verifyMs: number; finishMs: number; restoreMs: number }

/** In the new kernel: retrieve every VM, check every byte, finish, and preserve again for the next update. */
function resumeVms(k: Kernel, problems: string[]): Phases {
  const luo = k.luo!;
  let t = performance.now();
  luo.open();
  const restoreMs = performance.now() - t;
  const ph: Phases = { retrieveMs: 0, verifyMs: 0, finishMs: 0, restoreMs };
  for (const vm of VMS) {
    t = performance.now();
    const inc = luo.retrieveSession(vm.name);
    const ram = luo.sessions.retrieveFile(inc, TOKEN_RAM) as MemfdFile;
    const state = luo.sessions.retrieveFile(inc, TOKEN_STATE) as MemfdFile;
    ph.retrieveMs += performance.now() - t;
    t = performance.now();
    if (ram.stat().size !== vm.ramBytes) problems.push(`${vm.name}: guest RAM size ${ram.stat().size}, expected ${vm.ramBytes}`);
    for (const idx of vm.touched) {
      const got = ram.pread(PAGE, idx * PAGE);
      if (!Buffer.from(got).equals(pageData(vm.name, idx))) { problems.push(`${vm.name}: guest page ${idx} differs`); break; }
    }
    const untouched = ram.pread(PAGE, ((vm.touched[0] ?? 0) + 1) * PAGE);
    if (!vm.touched.includes((vm.touched[0] ?? 0) + 1) && !untouched.every((b) => b === 0)) problems.push(`${vm.name}: an untouched guest page is not zero`);
    if (!Buffer.from(state.pread(vm.stateBytes, 0)).equals(stateData(vm.name, vm.stateBytes))) problems.push(`${vm.name}: device state differs`);
    if (state.pos !== vm.stateBytes >> 1) problems.push(`${vm.name}: device state position ${state.pos}, expected ${vm.stateBytes >> 1}`);
    ph.verifyMs += performance.now() - t;
    t = performance.now();
    luo.sessions.finish(inc);
    luo.sessions.release(inc);
    ph.finishMs += performance.now() - t;
    // The agent hands the same memfds to the next kernel.
    const out = luo.createSession(vm.name);
    luo.sessions.preserveFile(out, TOKEN_RAM, ram);
    luo.sessions.preserveFile(out, TOKEN_STATE, state);
  }
  luo.close();
  return ph;
}

/** Progress of the demo, for a watcher such as `luo dashboard --demo` (awaited: it may pace the demo). */
export type DemoEvent =
  | { kind: 'booted' | 'started' | 'kexeced'; machine: Machine; update: number; message: string }
  | { kind: 'updated'; machine: Machine; update: number; message: string; phases: Array<[string, number]>; verifyMs: number; preservedPages: number; blocks: number }
  | { kind: 'done'; machine: Machine; update: number; message: string; code: number; problems: string[] };

export async function runDemo(opts: { updates?: number; quiet?: boolean; onProgress?: (ev: DemoEvent) => void | Promise<void> } = {}): Promise<number> {
  const updates = opts.updates ?? 3;
  const publish = async (ev: DemoEvent): Promise<void> => { await opts.onProgress?.(ev); };
  // A spinner on the long steps, on a terminal only (a pipe or a log gets the plain report).
  let spinner: Ora | undefined;
  const step = (text: string): void => {
    if (opts.quiet || !process.stdout.isTTY || !(process.stdout.columns > 0)) return;
    spinner = ora({ text, stream: process.stdout, discardStdin: false }).start();
  };
  const stepDone = (): void => {
    spinner?.stop();
    spinner = undefined;
  };
  const out = (s = '') => { if (!opts.quiet) { stepDone(); console.log(s); } };
  const problems: string[] = [];
  const t0 = performance.now();
  out('luo demo: a simulated 64 GiB host, three VMs in memfds, three live updates in a row');
  out();
  step('booting a 64 GiB host');
  const m = new Machine({ ramSize: 64n * GiB });
  let k = m.kernel;
  out(`booted ${k.build.release} (${k.build.khoProfile}, luo-v5) with "${k.cmdline.raw}"`);
  out(`KHO scratch areas: ${k.scratch.map((s) => `0x${s.addr.toString(16)}+${fmtBytes(Number(s.size))}`).join(', ')}`);
  await publish({ kind: 'booted', machine: m, update: 0, message: `booted ${k.build.release} (cold)` });
  step('starting three VMs and preserving their memfds');
  k.luo!.open();
  startVms(k);
  k.luo!.close();
  const guest = VMS.reduce((a, v) => a + v.ramBytes + v.stateBytes, 0);
  out(`started ${VMS.length} VMs: ${VMS.map((v) => `${v.name} (${fmtBytes(v.ramBytes)} RAM, ${v.touched.length} pages written)`).join(', ')}`);
  out(`preserved: ${VMS.length} sessions, ${VMS.length * 2} memfds, ${fmtBytes(guest)} of guest memory in ${k.kho!.preservedBlocks} KHO blocks`);
  await publish({ kind: 'started', machine: m, update: 0, message: `started ${VMS.length} VMs; ${VMS.length} sessions preserved` });
  for (let u = 1; u <= updates; u++) {
    out();
    out(`── live update ${u} ─────────────────────────────────────────────`);
    const preservedBefore = k.kho!.preservedPages;
    step(`live update ${u}: freezing, serializing, kexec into the new kernel`);
    try {
      k = m.kexec();
    } catch (e) {
      problems.push(`live update ${u}: kexec failed: ${e instanceof Error ? e.message : String(e)}`);
      break;
    }
    const st = k.kexecStats!;
    await publish({ kind: 'kexeced', machine: m, update: u, message: `live update ${u}: kernel booted from the hand-over` });
    if (!k.handover) problems.push(`live update ${u}: the new kernel found no hand-over`);
    let ph: Phases;
    if (spinner) spinner.text = `live update ${u}: retrieving and verifying every VM`;
    try {
      ph = resumeVms(k, problems);
    } catch (e) {
      problems.push(`live update ${u}: ${e instanceof LuoError ? e.message : String(e)}`);
      break;
    }
    out(`kernel #${k.luo!.incomingNum + 1} is running; liveupdate_num ${k.luo!.incomingNum}, kexec count ${k.kho!.incoming?.kexecCount ?? 0}`);
    out(`handed over ${fmtBytes(preservedBefore * PAGE)} in ${st.preservedPages ? k.kho!.incoming!.blocks : 0} preserved blocks, tracker ${st.trackerPages} pages`);
    out('blackout:');
    const rows: Array<[string, number]> = [
      ['freeze + serialize (LUO reboot path)', st.serializeMs],
      ['kexec (scratch segment, poison the rest)', st.handoverMs],
      ['boot + KHO walk and reserve', st.bootMs],
      ['LUO restore (first open)', ph.restoreMs],
      ['retrieve', ph.retrieveMs],
      ['finish', ph.finishMs],
    ];
    for (const [what, ms] of rows) out(`  ${what.padEnd(44)} ${fmtMs(ms).padStart(10)}`);
    out(`  ${'total'.padEnd(44)} ${fmtMs(rows.reduce((a, r) => a + r[1], 0)).padStart(10)}`);
    out(`verified every written guest page and all device state (${fmtMs(ph.verifyMs)})`);
    await publish({ kind: 'updated', machine: m, update: u, message: `live update ${u} verified`, phases: rows, verifyMs: ph.verifyMs, preservedPages: preservedBefore, blocks: k.kho!.incoming?.blocks ?? 0 });
  }
  out();
  out('hand-over tree the last kernel received (KHO root FDT):');
  if (k.kho?.incoming) out(toDts(k.kho.incoming.root.blob).trimEnd().split('\n').map((l) => `  ${l}`).join('\n'));
  const host = process.memoryUsage().rss;
  out();
  out(`host memory ${fmtBytes(host)} for ${fmtBytes(Number(m.memory.size))} of simulated RAM; ${fmtMs(performance.now() - t0)} in all`);
  const code = problems.length ? 1 : 0;
  await publish({ kind: 'done', machine: m, update: updates, message: code ? `FAILED: ${problems.length} problem(s)` : 'every preserved byte verified after each live update', code, problems });
  if (problems.length) {
    console.error(`\nFAILED: ${problems.length} problem(s):`);
    for (const p of problems) console.error(`  - ${p}`);
    return 1;
  }
  out('OK: every preserved byte verified after each live update');
  return 0;
}
