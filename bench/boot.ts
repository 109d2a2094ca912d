/**
 * Boot cost against RAM size: a cold boot and an empty kexec (no preserved state) of machines of
 * 1 TiB, 16 TiB and 128 TiB. The kernel's own work there is per memory region, not per page (the
 * buddy allocator takes the free memory in max-order runs), so the target is a flat line: at most
 * 200 ms at 128 TiB and a scaling exponent near 0. Each figure is the best of 5.
 *
 *     npm run bench -- boot
 */
import { Machine } from '../src/kernel/machine.ts';

const SIZES_TIB = [1, 16, 128] as const;
const RUNS = 5;

function best(f: () => void): number {
  let b = Infinity;
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    f();
    b = Math.min(b, performance.now() - t);
  }
  return b;
}

export function runBootBench(): void {
  const rows: Array<{ tib: number; cold: number; kexec: number }> = [];
  for (const tib of SIZES_TIB) {
    const ram = BigInt(tib) << 40n;
    const cold = best(() => void new Machine({ ramSize: ram }));
    const m = new Machine({ ramSize: ram });
    const kexec = best(() => void m.kexec());
    rows.push({ tib, cold, kexec });
  }
  const first = rows[0]!;
  const last = rows[rows.length - 1]!;
  const k = (a: number, b: number): string => (Math.log(b / a) / Math.log(last.tib / first.tib)).toFixed(2);
  console.log(`boot: cold boot and empty kexec against RAM size, best of ${RUNS}; target <= 200 ms at 128 TiB, exponent ~0`);
  for (const r of rows) {
    console.log(`  ${String(r.tib).padStart(3)} TiB   cold boot ${r.cold.toFixed(1).padStart(7)} ms   empty kexec ${r.kexec.toFixed(1).padStart(7)} ms   ${(Math.max(r.cold, r.kexec) / 200).toFixed(3)}x of 200 ms`);
  }
  console.log(`  exponent over RAM size: cold boot ${k(first.cold, last.cold)}, empty kexec ${k(first.kexec, last.kexec)}`);
}
