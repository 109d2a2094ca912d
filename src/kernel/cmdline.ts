/**
 * The kernel command line as the live-update code reads it: `kho=`, `kho_scratch=`, `liveupdate=`
 * (kstrtobool values), plus luo's own `luo.restore_fail=` policy switch. Mirrors early_param parsing.
 */

export interface Cmdline {
  readonly raw: string;
  readonly params: ReadonlyMap<string, string>;
}

export function parseCmdline(raw: string): Cmdline {
  const params = new Map<string, string>();
  for (const tok of raw.trim().split(/\s+/)) {
    if (!tok) continue;
    const eq = tok.indexOf('=');
    if (eq < 0) params.set(tok, '');
    else params.set(tok.slice(0, eq), tok.slice(eq + 1));
  }
  return { raw: raw.trim(), params };
}

/** kstrtobool: 1/y/Y/on/t, 0/n/N/off/f (first characters as the kernel checks them). */
export function kstrtobool(s: string): boolean | undefined {
  const v = s.toLowerCase();
  if (v === '') return undefined;
  if (v[0] === '1' || v[0] === 'y' || v[0] === 't') return true;
  if (v[0] === '0' || v[0] === 'n' || v[0] === 'f') return false;
  if (v.startsWith('on')) return true;
  if (v.startsWith('of')) return false;
  return undefined;
}

export function boolParam(c: Cmdline, name: string, dflt: boolean): boolean {
  const v = c.params.get(name);
  if (v === undefined) return dflt;
  return kstrtobool(v) ?? dflt;
}

/** Appends or replaces `name=value` (what kexec --append / --reuse-cmdline users do). */
export function withParam(raw: string, name: string, value: string): string {
  const parts = raw.trim().split(/\s+/).filter((t) => t && t.split('=')[0] !== name);
  parts.push(`${name}=${value}`);
  return parts.join(' ');
}
