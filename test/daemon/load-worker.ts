/**
 * A load-test worker (run by load.test.ts): `clients` client processes of the daemon, each with
 * its own (synthetic) pid, loop create/preserve/close until the deadline, close everything and
 * report; on "final" each keeps one session with known contents and reports again.
 */
import { createInterface } from 'node:readline';
import { LuoClient, type LuoDevice } from '../../src/client/index.ts';
import { LuoError } from '../../src/errno.ts';
import { contentOf } from './load-data.ts';

const [socket, clientsArg, basePidArg, msArg] = process.argv.slice(2) as [string, string, string, string];
const clients = Number(clientsArg);
const basePid = Number(basePidArg);
const deadline = Date.now() + Number(msArg);
const errnos: Record<string, number> = {};
const unexpected: string[] = [];
let ops = 0;

const expectErr = async <T>(p: Promise<T>, allowed: string[], what: string): Promise<T | undefined> => {
  try {
    const v = await p;
    ops++;
    return v;
  } catch (e) {
    if (!(e instanceof LuoError)) throw e;
    errnos[e.errno] = (errnos[e.errno] ?? 0) + 1;
    if (!allowed.includes(e.errno)) unexpected.push(`${what}: ${e.message}`);
    return undefined;
  }
};

/** open("/dev/liveupdate"), retrying EBUSY (one opener at a time). */
async function openDevice(c: LuoClient): Promise<LuoDevice> {
  for (;;) {
    const d = await expectErr(c.openDevice(), ['EBUSY'], 'open');
    if (d) return d;
    await new Promise((r) => setTimeout(r, Math.random() * 3));
  }
}

async function churn(pid: number): Promise<LuoClient> {
  const c = await LuoClient.connect(socket, { pid });
  let iter = 0;
  while (Date.now() < deadline) {
    const dev = await openDevice(c);
    const s = await expectErr(dev.createSession(`load-${pid}-${iter++}`), [], 'create');
    await dev.close();
    if (!s) continue;
    const data = new Uint8Array(1 + Math.floor(Math.random() * 3 * 4096));
    await expectErr(s.preserveBuffer(data, 1), [], 'preserve');
    await expectErr(s.preserveBuffer(data, 1), ['EEXIST'], 'preserve twice');
    await expectErr(s.preserveBuffer(data, 2, { pos: data.length }), [], 'preserve 2');
    await expectErr(s.getName(), [], 'get name');
    await expectErr(s.finish(), ['EINVAL'], 'finish on outgoing');
    await s.close();
  }
  return c;
}

const pids = Array.from({ length: clients }, (_, i) => basePid + i);
const cs = await Promise.all(pids.map(churn));
process.stdout.write(`${JSON.stringify({ phase: 'churned', ops, errnos, unexpected })}\n`);
const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  if (line !== 'final') continue;
  await Promise.all(cs.map(async (c, i) => {
    const pid = pids[i]!;
    const dev = await openDevice(c);
    const s = await expectErr(dev.createSession(`final-${pid}`), [], 'final create');
    await dev.close();
    await expectErr(s!.preserveBuffer(contentOf(pid), 0xf00 + pid, { pos: pid % 4096 }), [], 'final preserve');
    // The session fd stays open: it dies with the kexec.
  }));
  process.stdout.write(`${JSON.stringify({ phase: 'final', ops, errnos, unexpected })}\n`);
}
