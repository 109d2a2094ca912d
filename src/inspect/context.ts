/**
 * What every decoder step shares: the memory view, the problem list and the tracker's preserved
 * set. read() reports an unreadable pointer at its location (an error in a memory dump, only a note
 * for a lone blob that carries no memory); preserved() flags referenced pages nobody preserved.
 */
import { type PhysView } from './phys.ts';
import type { PreservedSet } from './tracker.ts';
import { type Problems, hex } from './report.ts';

export class Ctx {
  preserved: PreservedSet | undefined;
  constructor(readonly view: PhysView, readonly problems: Problems, readonly lone: boolean) {}

  /** `len` bytes at `pa`, or undefined after reporting `what` as pointing outside memory. */
  read(pa: bigint, len: number, where: string, what: string): Uint8Array | undefined {
    try {
      return this.view.read(pa, len);
    } catch (e) {
      if (this.lone) this.problems.info(where, `${what} ${hex(pa)} is not part of this input (no memory to follow it into)`);
      else this.problems.error(where, `${what} ${hex(pa)} points outside memory: ${(e as Error).message}`);
      return undefined;
    }
  }

  /** Reports [pa, pa+len) when the tracker does not preserve all of it. */
  checkPreserved(pa: bigint, len: number, where: string, what: string): void {
    const set = this.preserved;
    if (!set || set.covers(pa, len)) return;
    const msg = `${what} ${hex(pa)}${len > 4096 ? `+${hex(len)}` : ''} is not preserved by the KHO tracker: the next kernel may hand that memory out`;
    if (set.complete) this.problems.error(where, msg);
    else this.problems.warn(where, `${msg} (the tracker listing was cut short)`);
  }
}
