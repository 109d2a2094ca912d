/**
 * LUO with real memfds across live updates: every byte, size, position and seal survives, and for
 * the sessions the real 7.3.4 run created, luo's session and file blocks equal the real kernel's
 * bytes with physical addresses set aside.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Machine } from '../../src/kernel/machine.ts';
import type { Kernel } from '../../src/kernel/kernel.ts';
import { F_SEAL_GROW, F_SEAL_SHRINK, MFD_ALLOW_SEALING, MemfdFile, memfdCreate, SEEK_SET } from '../../src/handlers/memfd-file.ts';
import { LuoFileSer, LuoSer, LuoSessionSer } from '../../src/abi/luo.ts';
import { isLuoError } from '../../src/errno.ts';

const GiB = 1n << 30n;
const PG = 4096;

function pattern(seed: number, n: number): Uint8Array {
  const b = new Uint8Array(n);
  let x = seed || 1;
  for (let i = 0; i < n; i++) { x = (x * 1103515245 + 12345) >>> 0; b[i] = x >>> 24; }
  return b;
}

/** The sessions luoprobe's stage 1 created on the real kernel (tools/luoprobe.c). */
function realScenario(k: Kernel) {
  const luo = k.luo!;
  luo.open();
  const sa = luo.createSession('conf-session-a');
  luo.createSession('conf-session-b-empty');
  const sc = luo.createSession('conf-session-c-finish-early');
  const m4 = memfdCreate(k.memfd, 'conf-early', 0);
  m4.write(new TextEncoder().encode('finish-early'));
  luo.sessions.preserveFile(sc, 0x4dn, m4);
  const m1 = memfdCreate(k.memfd, 'conf-hello', 0);
  m1.write(new TextEncoder().encode('hello kexec world'));
  const m2 = memfdCreate(k.memfd, 'conf-pages', MFD_ALLOW_SEALING);
  m2.pwrite(new Uint8Array(PG).fill(0x41), 0);
  m2.pwrite(new Uint8Array(PG).fill(0x43), 2 * PG);
  m2.fallocate(3 * PG, PG);
  m2.lseek(100, SEEK_SET);
  m2.addSeals(F_SEAL_GROW | F_SEAL_SHRINK);
  const m3 = memfdCreate(k.memfd, 'conf-empty', 0);
  luo.sessions.preserveFile(sa, 0x1an, m1);
  luo.sessions.preserveFile(sa, 0x2bn, m2);
  luo.sessions.preserveFile(sa, 0x3cn, m3);
  m1.lseek(5, SEEK_SET); // captured at freeze time
  return { m1, m2, m3, m4 };
}

const realPage = (name: string) => new Uint8Array(readFileSync(new URL(`../fixtures/real-kernel/handover-memory/pages/${name}`, import.meta.url)));

/** A page with its address-valued fields zeroed: {next} header, session `files`, file `data`. */
function maskSessions(page: Uint8Array): Uint8Array {
  const p = page.slice();
  p.fill(0, 0, 8);
  const n = Number(new DataView(p.buffer).getBigUint64(8, true));
  for (let i = 0; i < n; i++) p.fill(0, 16 + i * 80 + 64, 16 + i * 80 + 72);
  return p;
}
function maskFiles(page: Uint8Array): Uint8Array {
  const p = page.slice();
  p.fill(0, 0, 8);
  const n = Number(new DataView(p.buffer).getBigUint64(8, true));
  for (let i = 0; i < n; i++) p.fill(0, 16 + i * 64 + 48, 16 + i * 64 + 56);
  return p;
}

test('the real run\'s sessions: luo writes the same session block and file blocks, byte for byte', () => {
  const m = new Machine({ ramSize: GiB });
  const k = m.kernel;
  realScenario(k);
  const pages: Record<string, Uint8Array> = {};
  k.onReboot(() => {
    const ser = LuoSer.decode(m.memory.read(k.luo!.outgoingSerPa, 32));
    const block = m.memory.read(ser.sessions_pa, PG);
    pages.sessions = block;
    pages.fileA = m.memory.read(LuoSessionSer.decode(block, 16).files, PG);
    pages.fileC = m.memory.read(LuoSessionSer.decode(block, 16 + 160).files, PG);
    pages.ser = m.memory.read(k.luo!.outgoingSerPa, PG);
    pages.flb = m.memory.read(ser.flbs_pa, PG);
  });
  const k2 = m.kexec();
  assert.deepEqual(Buffer.from(maskSessions(pages.sessions!)), Buffer.from(maskSessions(realPage('session-block-0@0x3f83d000.bin'))));
  assert.deepEqual(Buffer.from(maskFiles(pages.fileA!)), Buffer.from(maskFiles(realPage('file-block.conf-session-a-0@0x3ef000.bin'))));
  assert.deepEqual(Buffer.from(maskFiles(pages.fileC!)), Buffer.from(maskFiles(realPage('file-block.conf-session-c-finish-early-0@0x3f825000.bin'))));
  const maskSer = (p: Uint8Array) => { const c = p.slice(); c.fill(0, 16, 32); return c; };
  assert.deepEqual(Buffer.from(maskSer(pages.ser!)), Buffer.from(maskSer(realPage('luo_ser@0x3ac000.bin'))), 'luo_ser: luo-v5, liveupdate_num 1');
  assert.deepEqual(Buffer.from(pages.flb!), Buffer.from(realPage('flb_header@0x3ad000.bin')), 'FLB header page');
  // And the stage-2 behaviour luoprobe recorded (logs/fixtures-serial.log).
  const luo = k2.luo!;
  luo.open();
  const sa = luo.retrieveSession('conf-session-a');
  const hello = luo.sessions.retrieveFile(sa, 0x1an) as MemfdFile;
  assert.equal(hello.pos, 5);
  assert.equal(new TextDecoder().decode(hello.pread(100, 0)), 'hello kexec world');
  assert.equal(luo.sessions.retrieveFile(sa, 0x1an), hello, 'RETRIEVE_FD again: the same open file');
  const pagesFd = luo.sessions.retrieveFile(sa, 0x2bn) as MemfdFile;
  assert.equal(pagesFd.pos, 100);
  assert.equal(pagesFd.getSeals(), F_SEAL_GROW | F_SEAL_SHRINK);
  assert.throws(() => pagesFd.ftruncate(PG), (e) => isLuoError(e, 'EPERM'), 'seals survive the kexec');
  const sc = luo.retrieveSession('conf-session-c-finish-early');
  luo.sessions.finish(sc); // before retrieving: discards the file
  assert.throws(() => luo.sessions.retrieveFile(sc, 0x4dn), (e) => isLuoError(e, 'ENOENT'));
  luo.sessions.finish(sc);
  luo.sessions.release(sc);
  assert.throws(() => luo.retrieveSession('conf-session-c-finish-early'), (e) => isLuoError(e, 'ENOENT'));
  luo.createSession('conf-session-c-finish-early');
});

test('memfds of many sizes through three live updates in a row, every byte compared', () => {
  const m = new Machine({ ramSize: 4n * GiB });
  let k = m.kernel;
  const sizes = [0, 1, 17, PG - 1, PG, PG + 1, 5 * PG + 123, 256 * 1024, 3 * 1024 * 1024 + 7];
  const want = sizes.map((n, i) => pattern(i + 1, n));
  const big = 1 << 30; // 1 GiB memfd, mostly untouched
  k.luo!.open();
  let s = k.luo!.createSession('guest');
  sizes.forEach((n, i) => {
    const f = memfdCreate(k.memfd, `f${i}`, 0);
    f.write(want[i]!);
    f.lseek(n >> 1, SEEK_SET);
    k.luo!.sessions.preserveFile(s, BigInt(i), f);
    f.close(); // LUO keeps its own reference
  });
  const g = memfdCreate(k.memfd, 'guest-ram', 0);
  g.ftruncate(big);
  g.pwrite(pattern(99, 8192), big - 8192);
  k.luo!.sessions.preserveFile(s, 1000n, g);
  const host0 = m.memory.stats().hostBytes;
  for (let round = 0; round < 3; round++) {
    k = m.kexec();
    const luo = k.luo!;
    luo.open();
    const inc = luo.retrieveSession('guest');
    const out = luo.createSession('guest');
    sizes.forEach((n, i) => {
      const f = luo.sessions.retrieveFile(inc, BigInt(i)) as MemfdFile;
      assert.equal(f.stat().size, n, `size of f${i}`);
      assert.equal(f.pos, n >> 1);
      assert.deepEqual(Buffer.from(f.pread(n, 0)), Buffer.from(want[i]!), `bytes of f${i}, round ${round}`);
    });
    const gg = luo.sessions.retrieveFile(inc, 1000n) as MemfdFile;
    assert.equal(gg.stat().size, big);
    assert.deepEqual(Buffer.from(gg.pread(8192, big - 8192)), Buffer.from(pattern(99, 8192)));
    assert.ok(gg.pread(4096, 12345 * 4096).every((b) => b === 0), 'untouched guest memory reads as zeros');
    const files = [...sizes.keys()].map((i) => luo.sessions.retrieveFile(inc, BigInt(i)));
    luo.sessions.finish(inc);
    luo.sessions.release(inc);
    files.forEach((f, i) => luo.sessions.preserveFile(out, BigInt(i), f));
    luo.sessions.preserveFile(out, 1000n, gg);
    s = out;
  }
  assert.ok(m.memory.stats().hostBytes - host0 < 64 * 1024 * 1024, 'a 1 GiB memfd costs only what was written');
});
