/** `luo dtb` end to end: DTS equal to dtc's, --json, stdin, and failures with offsets and exit 1. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIX = fileURLToPath(new URL('../fixtures/real-kernel/', import.meta.url));

function luo(args: string[], input?: Uint8Array): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['bin/luo.mjs', ...args], { cwd: ROOT, input, maxBuffer: 1 << 26 });
  return { status: r.status ?? -1, stdout: r.stdout.toString('latin1'), stderr: r.stderr.toString() };
}

function dtc(file: string): string {
  const r = spawnSync('dtc', ['-I', 'dtb', '-O', 'dts', file]);
  if (r.error) assert.fail(`cannot run dtc (install Debian's device-tree-compiler): ${r.error.message}`);
  assert.equal(r.status, 0);
  return r.stdout.toString('latin1');
}

test('luo dtb prints the real KHO FDTs exactly as dtc does', () => {
  for (const f of ['handover-memory/kho-fdt-at-kexec.dtb', 'debugfs/s2-boot/in/fdt', 'debugfs/s2-after-finish/in/fdt']) {
    const r = luo(['dtb', FIX + f]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.equal(r.stdout, dtc(FIX + f), f);
  }
});

test('luo dtb - reads stdin; --json prints the decoded tree', () => {
  const blob = spawnSync('cat', [FIX + 'debugfs/s2-boot/in/fdt']).stdout;
  const r = luo(['dtb', '-'], blob);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, dtc(FIX + 'debugfs/s2-boot/in/fdt'));
  const j = luo(['dtb', '--json', FIX + 'debugfs/s2-boot/in/fdt']);
  assert.equal(j.status, 0, j.stderr);
  const tree = JSON.parse(j.stdout);
  assert.deepEqual(tree.problems, []);
  assert.equal(tree.header.totalsize, 285);
  assert.equal(tree.root.properties[0].string, 'kho-v4');
  assert.equal(tree.root.properties[1].u64le, '0x1ef000');
  assert.deepEqual(tree.root.children.map((c: { name: string }) => c.name), ['LUO', 'kexec-metadata']);
});

test('the truncated debugfs out/fdt fails as dtc fails it: the problem and its offset, exit 1, no partial output', () => {
  const r = luo(['dtb', FIX + 'debugfs/s1-boot/out/fdt']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /FDT_ERR_TRUNCATED at offset 4: totalsize 285 > 233 available bytes/);
  assert.match(r.stderr, /truncated: the blob ends at byte 233 of its totalsize 285; nothing printed \(`luo inspect .*` decodes what is there\)/);
  assert.equal(r.stdout, '');
  const j = luo(['dtb', '--json', FIX + 'debugfs/s1-after-preserve/out/fdt']);
  assert.equal(j.status, 1);
  const tree = JSON.parse(j.stdout);
  assert.deepEqual(tree.problems.map((p: { code: string; offset: number }) => [p.code, p.offset]), [['TRUNCATED', 4]]);
});

test('unreadable input: missing file, garbage, bad magic', () => {
  const missing = luo(['dtb', FIX + 'no-such.dtb']);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /cannot read .*no-such\.dtb: no such file/);
  assert.equal(missing.stdout, '');
  const garbage = luo(['dtb', '-'], new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]));
  assert.equal(garbage.status, 1);
  assert.match(garbage.stderr, /FDT_ERR_BADMAGIC at offset 0/);
  const usage = luo(['dtb']);
  assert.equal(usage.status, 2);
});
