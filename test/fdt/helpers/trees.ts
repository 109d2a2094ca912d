/**
 * fast-check generators for the FDT tests: random trees (names that share suffixes and unit
 * addresses, property values of every size), and the sequential-write scripts that build them.
 */
import fc from 'fast-check';
import type { Op } from './libfdt.ts';

export interface TNode {
  name: string;
  props: Array<[string, Uint8Array]>;
  children: TNode[];
}

/** Property names: a pool that exercises de-duplication and suffix sharing, plus random ones. */
export const propName = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('compatible', 'reg', 'size', 'blob-size', 'preserved-data', 'preserved-memory-map', 'data', 'a', 'ab', 'b', 'e', 'status', '#address-cells') },
  { weight: 1, arbitrary: fc.stringMatching(/^[a-z#][a-z0-9,._+#-]{0,30}$/) },
);

/** Node names: plain, with unit addresses, and random. */
export const nodeName = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('LUO', 'kexec-metadata', 'memblock', 'cpu', 'cpu@0', 'cpu@1', 'cpus', 'node@1', 'x', 'a') },
  { weight: 1, arbitrary: fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9,._+@-]{0,30}$/) },
);

export const propValue = fc.oneof(
  { weight: 4, arbitrary: fc.uint8Array({ maxLength: 16 }) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
);

export const tree: fc.Arbitrary<TNode> = fc.letrec<{ node: TNode }>((tie) => ({
  node: fc.record({
    name: nodeName,
    props: fc.array(fc.tuple(propName, propValue), { maxLength: 5 }),
    children: fc.oneof({ depthSize: 'small' }, fc.constant<TNode[]>([]), fc.array(tie('node'), { maxLength: 4 })),
  }),
})).node.map((root) => ({ ...root, name: '' }));

export const rsvEntries = fc.array(
  fc.tuple(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.oneof(fc.bigInt({ min: 1n, max: (1n << 64n) - 1n }), fc.constant(0n))),
  { maxLength: 3 },
);

/** The fdt_begin_node/fdt_property/fdt_end_node calls that write `n`. */
export function nodeOps(n: TNode, out: Op[] = []): Op[] {
  out.push(['begin', n.name]);
  for (const [k, v] of n.props) out.push(['prop', k, v]);
  for (const c of n.children) nodeOps(c, out);
  out.push(['end']);
  return out;
}

/** create, reservation entries, finishrsv, the tree, finish. */
export function buildOps(t: TNode, rsv: Array<[bigint, bigint]>, at: number, bufsize: number, flags = 0): Op[] {
  return [
    ['create', at, bufsize, flags],
    ...rsv.map(([a, s]): Op => ['rsv', a, s]),
    ['finishrsv'],
    ...nodeOps(t),
    ['finish'],
  ];
}

/** Every node's path and properties, depth first (for read-back checks). */
export function flatten(t: TNode, path = '/', out: Array<{ path: string; node: TNode }> = []): Array<{ path: string; node: TNode }> {
  out.push({ path, node: t });
  for (const c of t.children) flatten(c, path === '/' ? `/${c.name}` : `${path}/${c.name}`, out);
  return out;
}
