/**
 * In-place overwrites that never change the tree's size: a property's value rewritten in place,
 * a property or a whole node turned into FDT_NOP tags. Mirrors libfdt's fdt_wip.c.
 */
import { FDT_NOP, FdtError } from './format.ts';
import { FdtView, check, cstrBytes } from './walk.ts';

// Like fdt_wip.c, none of these probes the header: they only walk the node they are given.

function findProp(v: FdtView, node: number, name: string, what: string): number {
  return check(v.getProperty(node, cstrBytes(name)), node, `${what}(${JSON.stringify(name)})`);
}

/** fdt_setprop_inplace_namelen_partial: overwrites `value.length` bytes at `idx` of the value. */
export function setPropInplacePartial(fdt: Uint8Array, node: number, name: string, idx: number, value: Uint8Array): void {
  const v = new FdtView(fdt);
  const off = findProp(v, node, name, 'setPropInplacePartial');
  if (!Number.isInteger(idx) || idx < 0 || v.len < value.length + idx) {
    throw new FdtError('NOSPACE', off, `setPropInplacePartial(${JSON.stringify(name)}): ${value.length} bytes at ${idx} do not fit in ${v.len}`);
  }
  fdt.set(value, v.offDtStruct + off + 12 + idx);
}

/** fdt_setprop_inplace: overwrites the value, which must keep its exact length. */
export function setPropInplace(fdt: Uint8Array, node: number, name: string, value: Uint8Array): void {
  const v = new FdtView(fdt);
  const off = findProp(v, node, name, 'setPropInplace');
  if (v.len !== value.length) {
    throw new FdtError('NOSPACE', off, `setPropInplace(${JSON.stringify(name)}): ${value.length} bytes for a ${v.len}-byte value`);
  }
  fdt.set(value, v.offDtStruct + off + 12);
}

function nopRegion(v: FdtView, start: number, len: number): void {
  for (let p = start; p < start + len; p += 4) v.setU32(p, FDT_NOP);
}

/** fdt_nop_property: the property's tag, header and value become FDT_NOP words. */
export function nopProperty(fdt: Uint8Array, node: number, name: string): void {
  const v = new FdtView(fdt);
  const off = findProp(v, node, name, 'nopProperty');
  nopRegion(v, v.offDtStruct + off, v.len + 12);
}

/** fdt_nop_node: the node and everything under it become FDT_NOP words. */
export function nopNode(fdt: Uint8Array, node: number): void {
  const v = new FdtView(fdt);
  const end = check(v.nodeEndOffset(node), node, 'nopNode');
  nopRegion(v, v.offDtStruct + node, end - node);
}
