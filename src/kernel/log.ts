/** A dmesg-style kernel log: lines with a boot-relative timestamp, a level and a subsystem prefix. */

export type LogLevel = 'emerg' | 'err' | 'warn' | 'notice' | 'info' | 'debug';

export interface LogLine {
  readonly t: number;
  readonly level: LogLevel;
  readonly msg: string;
}

export class KernelLog {
  readonly lines: LogLine[] = [];
  private readonly start = performance.now();
  constructor(private readonly echo?: (line: string) => void) {}
  print(level: LogLevel, msg: string): void {
    const line = { t: (performance.now() - this.start) / 1000, level, msg };
    this.lines.push(line);
    this.echo?.(KernelLog.format(line));
  }
  static format(l: LogLine): string {
    return `[${l.t.toFixed(6).padStart(12)}] ${l.msg}`;
  }
  text(): string {
    return this.lines.map(KernelLog.format).join('\n');
  }
  /** Lines whose message matches. */
  grep(re: RegExp): string[] {
    return this.lines.filter((l) => re.test(l.msg)).map((l) => l.msg);
  }
}
