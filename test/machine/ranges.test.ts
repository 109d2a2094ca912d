/** IntervalSet: add, remove, intersect, subtract and queries against a point-set model. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IntervalSet, hex } from '../../src/machine/ranges.ts';

test('IntervalSet agrees with a point-set model (property)', () => {
  const span = fc.tuple(fc.integer({ min: 0, max: 120 }), fc.integer({ min: 0, max: 30 })).map(([s, l]) => ({ start: s, end: s + l }));
  const op = fc.record({ kind: fc.constantFrom('add', 'remove', 'intersect', 'subtract'), spans: fc.array(span, { minLength: 1, maxLength: 4 }) });
  fc.assert(
    fc.property(fc.array(op, { maxLength: 25 }), (ops) => {
      const set = new IntervalSet();
      let model = new Set<number>();
      for (const o of ops) {
        const pts = new Set<number>();
        for (const s of o.spans) for (let i = s.start; i < s.end; i++) pts.add(i);
        if (o.kind === 'add') {
          for (const s of o.spans) set.add(s.start, s.end);
          for (const p of pts) model.add(p);
        } else if (o.kind === 'remove') {
          for (const s of o.spans) set.remove(s.start, s.end);
          for (const p of pts) model.delete(p);
        } else if (o.kind === 'subtract') {
          set.subtract(IntervalSet.from(o.spans));
          for (const p of pts) model.delete(p);
        } else {
          set.intersect(IntervalSet.from(o.spans));
          model = new Set([...model].filter((p) => pts.has(p)));
        }
      }
      let prevEnd = -1;
      for (const s of set) {
        assert.ok(s.start > prevEnd, 'sorted, disjoint, not touching');
        assert.ok(s.end > s.start);
        prevEnd = s.end;
      }
      assert.equal(set.total(), model.size);
      for (let i = 0; i < 160; i++) {
        assert.equal(set.contains(i), model.has(i), `contains(${i})`);
        assert.equal(set.overlaps(i, i + 3), model.has(i) || model.has(i + 1) || model.has(i + 2), `overlaps(${i})`);
        assert.equal(set.covers(i, i + 2), model.has(i) && model.has(i + 1), `covers(${i})`);
      }
      const gaps = [...set.gaps(10, 100)];
      const within = [...set.within(10, 100)];
      let n = 0;
      for (const g of gaps) for (let i = g.start; i < g.end; i++) assert.ok(!model.has(i)), n++;
      for (const w of within) for (let i = w.start; i < w.end; i++) assert.ok(model.has(i)), n++;
      assert.equal(n, 90);
    }),
    { numRuns: 300 },
  );
});

test('hex prints addresses like the kernel, keeping a sign for bad input', () => {
  assert.equal(hex(0x39800000n), '0x39800000');
  assert.equal(hex(0), '0x0');
  assert.equal(hex(-8n), '-0x8');
});
