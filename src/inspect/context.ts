/**
 * What every decoder step shares: the memory view, the problem list and the tracker's preserved
 * set. read() reports an unreadable pointer at its location (an error in a memory dump, only a note
 * for a lone blob that carries no memory); preserved() flags referenced pages nobody preserved.
 */
import { type PhysView } from './phys.ts';
import type { PreservedSet } from './tracker.ts';
import { type Problems, hex } from './report.ts';

/** Units of work (blocks, chunks, folio entries) one inspection may spend: a backstop bound. */
export const WORK_BUDGET = 1 << 24;

export class Ctx {
  preserved: PreservedSet | undefined;
  private work = 0;
  private exhausted = false;
  /** Structure pages already claimed, by what claimed them (a page must not serve two owners). */
  private readonly owners = new Map<bigint, string>();
  constructor(readonly view: PhysView, readonly problems: Problems, readonly lone: boolean) {}

  /** Spends `n` units; false (reported once) when the budget is gone and decoding must stop. */
  spend(where: string, n = 1): boolean {
    this.work += n;
    if (this.work <= WORK_BUDGET) return true;
    if (!this.exhausted) this.problems.error(where, `more than ${WORK_BUDGET} blocks, chunks and folios in all: decoding stopped here`);
    this.exhausted = true;
    return false;
  }

  /**
   * Claims structure page/object `pa` for `owner`; when something else already claimed it, reports
   * the sharing (the next kernel would restore it twice) and returns false.
   */
  claim(pa: bigint, owner: string, where: string): boolean {
    const prev = this.owners.get(pa);
    if (prev === undefined) { this.owners.set(pa, owner); return true; }
    this.problems.error(where, `${hex(pa)} is already used as ${prev}: shared structures would be restored twice`);
    return false;
  }

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
