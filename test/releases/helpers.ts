/**
 * What the release tests share: a machine of a catalogue release with sessions preserved, captured
 * at its kexec, with readers of the captured bytes.
 */
import assert from 'node:assert/strict';
import { buildForRelease } from '../../src/kernel/build.ts';
import { Machine } from '../../src/kernel/machine.ts';
import { memfdCreate } from '../../src/handlers/memfd-file.ts';
import { captureAtKexec } from '../inspect/helpers.ts';

export const machine = (release: string, cmdline?: string) => new Machine({ ramSize: 1n << 30n, build: buildForRelease(release), ...(cmdline ? { cmdline } : {}) });

/** Sessions (name -> memfd bytes, token 0x77) preserved on a machine of `release`, captured at its kexec. */
export function captured(release: string, sessions: ReadonlyArray<readonly [string, number]>) {
  const m = machine(release);
  const k = m.kernel;
  const luo = k.luo!;
  luo.open();
  for (const [name, bytes] of sessions) {
    const s = luo.createSession(name);
    if (!bytes) continue;
    const f = memfdCreate(k.memfd, 'ram', 0);
    f.pwrite(new Uint8Array(bytes).fill(9), 0);
    luo.sessions.preserveFile(s, 0x77n, f);
  }
  const cap = captureAtKexec(m);
  const find = (pa: bigint, n: number): Uint8Array => {
    const seg = cap.segs.find((x) => pa >= x.pa && pa + BigInt(n) <= x.pa + BigInt(x.bytes.length));
    assert.ok(seg, `0x${pa.toString(16)}+${n} is not in the captured memory`);
    return seg.bytes.subarray(Number(pa - seg.pa), Number(pa - seg.pa) + n);
  };
  const le = (pa: bigint): bigint => new DataView(find(pa, 8).slice().buffer).getBigUint64(0, true);
  const text = (pa: bigint, n: number): string => new TextDecoder().decode(find(pa, n));
  return { cap, find, le, text, luoPa: luo.outgoingSerPa, serPa: luo.outgoingSerPa, flbPa: luo.flbHeaderPa };
}
