/**
 * Which releases of the catalogue could have written a hand-over: those whose KHO root compatible,
 * LUO compatible (raw luo_ser or FDT) and memfd handler string all match what was decoded.
 */
import { RELEASES } from '../abi/releases.ts';
import { LUO_SUBTREE_NAME } from '../abi/luo.ts';
import type { Report } from './report.ts';

/** Names of the matching releases; null when nothing release-specific was decoded. */
export function writtenBy(r: Report): string[] | null {
  const luoFdt = r.subtrees.find((s) => s.name === LUO_SUBTREE_NAME && s.compatible !== undefined)?.compatible;
  const memfds = new Set(r.sessions.flatMap((s) => s.files.map((f) => f.compatible)).filter((c) => c.startsWith('memfd')));
  if (!r.root && !r.luo && luoFdt === undefined) return null;
  return RELEASES.filter((rel) => {
    const a = rel.abi;
    if (r.root && r.root.compatible !== a.kho.compatible) return false;
    if (r.luo && a.luo.compatible !== r.luo.compatible) return false;
    if (r.luo?.compatible === 'luo-v1' && a.luo.format === 'fdt' && a.luo.flb !== (r.flbs !== null || r.luo.flbsPa !== 0n)) return false;
    if (r.luo?.compatible === 'luo-v1' && a.luo.format === 'fdt' && a.luo.subsystems !== (r.luo.subsystemsNode !== undefined)) return false;
    if (!r.luo && luoFdt !== undefined && (a.luo.format === 'raw' || a.luo.compatible !== luoFdt)) return false;
    return [...memfds].every((c) => c === a.memfd);
  }).map((rel) => rel.name);
}
