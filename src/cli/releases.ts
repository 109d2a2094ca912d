/**
 * `luo releases` and `luo plan FROM TO`: the catalogue of kernel releases with their hand-over ABIs
 * and limits, and whether a live update from one to another can work (and if not, which layer of the
 * new kernel refuses, why, what it logs, and a chain of hops that can, when there is one).
 */
import { findRelease, type Release, RELEASES } from '../abi/releases.ts';
import { plan, type Plan } from '../releases/plan.ts';
import { bold, dim, green, red } from './style.ts';

const luoDesc = (r: Release): string => {
  const l = r.abi.luo;
  if (l.format === 'fdt') return `${l.compatible} FDT (${l.sessionCompatible}${l.flb ? ', luo-flb-v1' : ''}${l.subsystems ? ', subsystems-v1' : ''})`;
  if (l.format === 'fdt-header') return `${l.compatible} FDT (luo-abi-header)`;
  return `${l.compatible} raw (sessions in ${l.sessions}, files in ${l.files}${l.blockPages !== 1 ? `, ${l.blockPages}-page blocks` : ''})`;
};

export function releasesJson(): unknown[] {
  return RELEASES.map((r) => ({ name: r.name, uname: r.uname, summary: r.summary, sources: r.sources, abi: r.abi }));
}

export function runReleases(opts: { json?: boolean }): number {
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(releasesJson(), null, 2)}\n`);
    return 0;
  }
  for (const r of RELEASES) {
    const a = r.abi;
    process.stdout.write(`${bold(r.name)} ${dim(`(uname ${r.uname})`)}\n`);
    process.stdout.write(`  ${r.summary}\n`);
    process.stdout.write(`  KHO ${a.kho.compatible}; LUO ${luoDesc(r)}; memfd ${a.memfd}\n`);
    process.stdout.write(`  uAPI: ${a.uapi.getName ? 'with GET_NAME, direction and name checks' : '3 session ioctls (no GET_NAME), names unchecked'}; at most ${a.limits.sessions} sessions (${a.limits.sessionsErrno}), ${a.limits.filesPerSession} files per session\n`);
    process.stdout.write(`  ${dim(`sources: ${r.sources.join('; ')}`)}\n`);
  }
  return 0;
}

function describe(p: Plan): string[] {
  const v = p.verdict;
  const out: string[] = [];
  if (v.kind === 'live-update') out.push(`${green('live update: yes')} — sessions and files are restored`);
  else if (v.kind === 'undefined') out.push(`${red('live update: unsafe')} — ${v.layer}: ${v.reason}`);
  else {
    const what = v.kind === 'no-handover'
      ? 'the new kernel boots as after a cold boot; every session is lost'
      : v.kind === 'restore-failed'
        ? `LUO's early startup fails with ${v.errno}: the kernel panics${v.panicsAlways ? ' (luo.restore_fail=disable does not help: it calls panic() itself)' : ' (with luo.restore_fail=disable it boots without /dev/liveupdate)'}`
        : v.kind === 'files-lost'
          ? `the sessions come back, but RETRIEVE_FD of those files fails with ${v.errno}`
          : `opening /dev/liveupdate fails with ${v.errno} once a file was preserved`;
    out.push(`${red('live update: no')} — refused by ${bold(v.layer)}: ${v.reason}`);
    out.push(`  then: ${what}`);
    out.push(`  the new kernel logs: ${v.log}`);
  }
  for (const n of p.notes) out.push(`  note: ${n}`);
  if (v.kind !== 'live-update') out.push(p.chain ? `  a chain that can: ${p.chain.join(' -> ')}` : '  no chain of releases in the catalogue can live-update there; plan a cold boot (or a drain) for this hop');
  return out;
}

export function runPlan(from: string, to: string, opts: { json?: boolean }): number {
  const a = findRelease(from);
  const b = findRelease(to);
  for (const [name, r] of [[from, a], [to, b]] as const) {
    if (!r) {
      process.stderr.write(`luo plan: unknown release "${name}" (known: ${RELEASES.map((x) => x.name).join(', ')})\n`);
      return 2;
    }
  }
  const p = plan(a!, b!);
  if (opts.json) process.stdout.write(`${JSON.stringify(p, null, 2)}\n`);
  else process.stdout.write(`${bold(`${a!.name} -> ${b!.name}`)}\n${describe(p).join('\n')}\n`);
  return p.verdict.kind === 'live-update' ? 0 : 1;
}
