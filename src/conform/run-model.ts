/**
 * Runs a generated uAPI program (program.ts) on luo's in-process kernel and prints the transcript
 * native/conformance/lu_script.c prints for the same program on a real /dev/liveupdate: one process
 * per stage, a kexec between stages (the process of the stage before forks a holder and exits, as
 * the C runner does).
 */
import { Machine, type MachineOptions } from '../kernel/machine.ts';
import { readI32 } from '../bytes/cursor.ts';
import { LIVEUPDATE_IOCTL as C } from '../abi/uapi.ts';
import { F_ADD_SEALS, F_GET_SEALS, O_RDWR, type Process, processesOf } from '../uapi/index.ts';
import { nameBytes, type Op, type Program, SLOTS, sizeOf, tokenOf } from './program.ts';

/** The user buffer every ioctl of the C runner passes (ARG_BUF in lu_script.c). */
const ARG_BUF = 160;

/** FNV-1a, as lu_script.c prints read data. */
function fnv(b: Uint8Array): string {
  let h = 2166136261;
  for (const x of b) h = Math.imul(h ^ x, 16777619) >>> 0;
  return h.toString(16).padStart(8, '0');
}

const hex8 = (b: Uint8Array): string => [...b.subarray(0, 8)].map((x) => x.toString(16).padStart(2, '0')).join('');

/** "b<base>-<i>" in a 64-byte name field (lu_script.c bulk_name). */
function bulkName(base: number, i: number): Uint8Array {
  const b = new Uint8Array(64);
  b.set(new TextEncoder().encode(`b${base}-${i}`));
  return b;
}

/** One stage on process `p`: the transcript lines. */
export function runStage(p: Process, ops: readonly Op[]): string[] {
  const slot: number[] = new Array(SLOTS).fill(-1);
  const fdOf = (s: bigint): number => (s >= 0n && s < BigInt(SLOTS) ? slot[Number(s)]! : -1);
  const set = (s: bigint, fd: number): void => {
    if (s >= 0n && s < BigInt(SLOTS)) slot[Number(s)] = fd;
  };
  const out: string[] = [];
  ops.forEach((op, i) => {
    const a = op.args;
    const n = (k: number): number => Number(a[k]!);
    const buf = new Uint8Array(ARG_BUF);
    const dv = new DataView(buf.buffer);
    let r: number;
    let extra = '';
    switch (op.name) {
      case 'open':
        r = p.open('/dev/liveupdate', O_RDWR);
        set(a[0]!, r);
        break;
      case 'create':
      case 'rsession': {
        dv.setUint32(0, sizeOf(n(3), 72, buf), true);
        dv.setInt32(4, -1, true);
        buf.set(nameBytes(n(2)), 8);
        r = p.ioctl(fdOf(a[1]!), op.name === 'create' ? C.CREATE_SESSION : C.RETRIEVE_SESSION, buf);
        if (r === 0) r = readI32(buf, 4, 'le');
        set(a[0]!, r >= 0 ? r : -1);
        break;
      }
      case 'memfd':
        r = p.memfdCreate('m', n(1));
        set(a[0]!, r);
        break;
      case 'preserve':
        dv.setUint32(0, sizeOf(n(3), 16, buf), true);
        dv.setInt32(4, fdOf(a[1]!), true);
        dv.setBigUint64(8, tokenOf(n(2)), true);
        r = p.ioctl(fdOf(a[0]!), C.SESSION_PRESERVE_FD, buf);
        break;
      case 'rfd':
        dv.setUint32(0, 16, true);
        dv.setInt32(4, -1, true);
        dv.setBigUint64(8, tokenOf(n(2)), true);
        r = p.ioctl(fdOf(a[1]!), C.SESSION_RETRIEVE_FD, buf);
        if (r === 0) r = readI32(buf, 4, 'le');
        set(a[0]!, r >= 0 ? r : -1);
        break;
      case 'finish':
        dv.setUint32(0, 8, true);
        dv.setUint32(4, n(1) >>> 0, true);
        r = p.ioctl(fdOf(a[0]!), C.SESSION_FINISH, buf);
        break;
      case 'getname':
        dv.setUint32(0, 72, true);
        dv.setUint32(4, n(1) >>> 0, true);
        r = p.ioctl(fdOf(a[0]!), C.SESSION_GET_NAME, buf);
        if (r === 0) {
          const name = buf.subarray(8, 72);
          const z = name.indexOf(0);
          extra = `name=${String.fromCharCode(...name.subarray(0, z < 0 ? 64 : z))}`;
        }
        break;
      case 'close':
        r = p.close(fdOf(a[0]!));
        set(a[0]!, -1);
        break;
      case 'dup':
        r = p.dup(fdOf(a[1]!));
        set(a[0]!, r);
        break;
      case 'pwrite':
        r = p.pwrite(fdOf(a[0]!), new Uint8Array(Math.min(n(2), 1 << 16)).fill(n(3)), n(1));
        break;
      case 'write':
        r = p.write(fdOf(a[0]!), new Uint8Array(Math.min(n(1), 1 << 16)).fill(n(2)));
        break;
      case 'ftruncate':
        r = p.ftruncate(fdOf(a[0]!), n(1));
        break;
      case 'fallocate':
        r = p.fallocate(fdOf(a[0]!), n(1), n(2), n(3));
        break;
      case 'seal':
        r = p.fcntl(fdOf(a[0]!), F_ADD_SEALS, n(1));
        break;
      case 'getseals':
        r = p.fcntl(fdOf(a[0]!), F_GET_SEALS);
        break;
      case 'fstat': {
        const st = p.fstat(fdOf(a[0]!));
        r = st === -1 ? -1 : 0;
        if (st !== -1) extra = `size=${st.size} blocks=${st.blocks}`;
        break;
      }
      case 'lseek':
        r = p.lseek(fdOf(a[0]!), n(1), n(2));
        break;
      case 'read': {
        const data = new Uint8Array(Math.min(n(2), 1 << 16));
        r = p.pread(fdOf(a[0]!), data, n(1));
        if (r >= 0) extra = `fnv=${fnv(data.subarray(0, r))}`;
        break;
      }
      case 'other': {
        // a file no handler takes: a pipe's read end, or /dev/null
        if (n(1) === 0) {
          const fds: number[] = [];
          r = p.pipe(fds);
          if (r === 0) {
            p.close(fds[1]!);
            r = fds[0]!;
          }
        } else {
          r = p.open('/dev/null', O_RDWR);
        }
        set(a[0]!, r >= 0 ? r : -1);
        break;
      }
      case 'bulk_create':
      case 'bulk_rsession': {
        let ok = 0;
        let first = '0';
        for (let j = 0; j < n(1); j++) {
          buf.fill(0);
          dv.setUint32(0, 72, true);
          dv.setInt32(4, -1, true);
          buf.set(bulkName(n(2), j), 8);
          if (p.ioctl(fdOf(a[0]!), op.name === 'bulk_create' ? C.CREATE_SESSION : C.RETRIEVE_SESSION, buf) === 0) ok++;
          else if (first === '0') first = p.errno!;
        }
        out.push(`${i + 1} ${op.name} r=${ok} e=${first}`);
        return;
      }
      case 'bulk_preserve': {
        let ok = 0;
        let first = '0';
        for (let j = 0; j < n(1); j++) {
          const m = p.memfdCreate('bulk', 0);
          if (m < 0) {
            if (first === '0') first = p.errno!;
            continue;
          }
          if (p.pwrite(m, `bulk-${n(2) + j}`, 0) < 0 && first === '0') first = p.errno!;
          buf.fill(0);
          dv.setUint32(0, 16, true);
          dv.setInt32(4, m, true);
          dv.setBigUint64(8, BigInt(n(2) + j), true);
          if (p.ioctl(fdOf(a[0]!), C.SESSION_PRESERVE_FD, buf) === 0) ok++;
          else if (first === '0') first = p.errno!;
          p.close(m);
        }
        out.push(`${i + 1} ${op.name} r=${ok} e=${first}`);
        return;
      }
      case 'bulk_rfd': {
        const all: number[] = [];
        let ok = 0;
        let first = '0';
        for (let j = 0; j < n(1) && j < 4096; j++) {
          buf.fill(0);
          dv.setUint32(0, 16, true);
          dv.setInt32(4, -1, true);
          dv.setBigUint64(8, BigInt(n(2) + j), true);
          if (p.ioctl(fdOf(a[0]!), C.SESSION_RETRIEVE_FD, buf) !== 0) {
            if (first === '0') first = p.errno!;
            continue;
          }
          ok++;
          const fd = readI32(buf, 4, 'le');
          const d = new Uint8Array(16);
          const k = p.pread(fd, d, 0);
          if (k > 0) all.push(...d.subarray(0, k));
          p.close(fd);
        }
        out.push(`${i + 1} ${op.name} r=${ok} e=${first} fnv=${fnv(Uint8Array.from(all))}`);
        return;
      }
      case 'ioctl':
        dv.setUint32(0, n(2) >>> 0, true);
        r = p.ioctl(fdOf(a[0]!), n(1) >>> 0, buf);
        extra = `out=${hex8(buf)}`;
        break;
    }
    out.push(`${i + 1} ${op.name} r=${r} e=${r < 0 ? p.errno : '0'}${extra ? ` ${extra}` : ''}`);
  });
  return out;
}

/** The whole program on a fresh machine: one transcript per stage. */
export function runModel(prog: Program, machine: MachineOptions = { ramSize: 1n << 30n }): string[][] {
  const m = new Machine(machine);
  const out: string[][] = [];
  prog.stages.forEach((ops, i) => {
    const k = i === 0 ? m.kernel : m.kexec();
    const p = processesOf(k).spawn();
    out.push(runStage(p, ops));
    // the C runner's --hold: a forked holder keeps every fd until the machine kexecs
    p.fork();
    p.exit(0);
  });
  return out;
}
