/**
 * The agent's structured log: one JSON object per line, `{"time", "level", "event", ...fields}`.
 * `time` is an ISO-8601 timestamp, `level` one of debug/info/warn/error, `event` a dotted name
 * (`update.start`, `kexec.refused`, `fallback.cold-boot`...). Fields are flattened next to those
 * three keys (a field may not be called time, level or event); bigints are written as hex strings
 * ("0x1a") and errors as their message.
 */

export type AgentLogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface AgentLogEntry {
  readonly time: string;
  readonly level: AgentLogLevel;
  readonly event: string;
  readonly [field: string]: unknown;
}

/** Receives each line (already JSON) and the entry it encodes. */
export type AgentLogSink = (line: string, entry: AgentLogEntry) => void;

const RESERVED = new Set(['time', 'level', 'event']);

function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  if (v instanceof Error) return v.message;
  if (Array.isArray(v)) return v.map(plain);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]));
  return v;
}

export class AgentLog {
  /** Every entry logged so far (also handy for tests). */
  readonly entries: AgentLogEntry[] = [];
  constructor(private readonly sink?: AgentLogSink, private readonly now: () => Date = () => new Date()) {}

  log(level: AgentLogLevel, event: string, fields: Record<string, unknown> = {}): AgentLogEntry {
    const entry: Record<string, unknown> = { time: this.now().toISOString(), level, event };
    for (const [k, v] of Object.entries(fields)) {
      if (v === undefined) continue;
      entry[RESERVED.has(k) ? `field_${k}` : k] = plain(v);
    }
    const e = entry as AgentLogEntry;
    this.entries.push(e);
    this.sink?.(JSON.stringify(e), e);
    return e;
  }

  info(event: string, fields?: Record<string, unknown>): AgentLogEntry {
    return this.log('info', event, fields);
  }
  warn(event: string, fields?: Record<string, unknown>): AgentLogEntry {
    return this.log('warn', event, fields);
  }
  error(event: string, fields?: Record<string, unknown>): AgentLogEntry {
    return this.log('error', event, fields);
  }
  debug(event: string, fields?: Record<string, unknown>): AgentLogEntry {
    return this.log('debug', event, fields);
  }

  /** The whole log as JSON lines. */
  text(): string {
    return this.entries.map((e) => JSON.stringify(e)).join('\n');
  }
}
