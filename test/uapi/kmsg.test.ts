/**
 * /dev/kmsg: one record per read ("<prio>,<seq>,<usec>,-;<message>\n"), EINVAL for a buffer too
 * small, EAGAIN at the end, SEEK_SET 0 and SEEK_END; what the agent reads to learn why a live
 * update failed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Machine } from '../../src/kernel/machine.ts';
import { O_NONBLOCK, O_RDONLY, processesOf } from '../../src/uapi/index.ts';
import { SEEK_END, SEEK_SET } from '../../src/handlers/memfd-file.ts';

test('/dev/kmsg gives the kernel log record by record', () => {
  const m = new Machine({ ramSize: 1n << 30n });
  const p = processesOf(m.kernel).spawn();
  const fd = p.open('/dev/kmsg', O_RDONLY | O_NONBLOCK);
  assert.ok(fd >= 0);
  const buf = new Uint8Array(8192);
  const n = p.read(fd, buf);
  const first = new TextDecoder().decode(buf.subarray(0, n));
  assert.match(first, /^5,0,\d+,-;Linux version 7\.3\.4-luo .*\n$/, 'notice level, sequence 0');
  assert.deepEqual([p.read(fd, new Uint8Array(8)), p.errno], [-1, 'EINVAL'], 'a buffer too small for the record');
  let records = 1;
  while (p.read(fd, buf) > 0) records++;
  assert.equal(p.errno, 'EAGAIN');
  assert.equal(records, m.kernel.log.lines.length);
  // a message with a newline is escaped, as printk does
  m.kernel.print('warn', 'two\nlines');
  const last = new TextDecoder().decode(buf.subarray(0, p.read(fd, buf)));
  assert.match(last, /^4,\d+,\d+,-;two\\x0alines\n$/);
  assert.equal(p.lseek(fd, 0, SEEK_END), 0);
  assert.deepEqual([p.read(fd, buf), p.errno], [-1, 'EAGAIN']);
  assert.equal(p.lseek(fd, 0, SEEK_SET), 0);
  assert.ok(p.read(fd, buf) > 0);
  assert.deepEqual([p.lseek(fd, 5, SEEK_SET), p.errno], [-1, 'EINVAL']);
});
