/**
 * Maintenance windows of a campaign: admissions happen only inside one (in-flight hosts finish
 * regardless). A window is a daily span of UTC clock time ("22:00" to "04:00" wraps past midnight),
 * optionally on some weekdays only (the day the window opens).
 */
export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

export interface Window {
  /** Minutes after 00:00 UTC. */
  readonly from: number;
  readonly to: number;
  /** Days it opens on (all when absent). */
  readonly days?: readonly Weekday[];
}

/** "HH:MM" -> minutes after midnight; undefined if malformed. */
export function clockMinutes(s: string): number | undefined {
  const m = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(s.trim());
  return m ? Number(m[1]) * 60 + Number(m[2]) : undefined;
}

/** Whether `at` (ms since the epoch) lies inside `w`. */
export function inWindow(w: Window, at: number): boolean {
  const d = new Date(at);
  const minute = d.getUTCHours() * 60 + d.getUTCMinutes();
  const day = d.getUTCDay();
  const opensOn = (dayIndex: number): boolean => !w.days || w.days.includes(WEEKDAYS[(dayIndex + 7) % 7]!);
  if (w.from <= w.to) return minute >= w.from && minute < w.to && opensOn(day);
  // wraps past midnight: the evening part opened today, the morning part opened yesterday
  return (minute >= w.from && opensOn(day)) || (minute < w.to && opensOn(day - 1));
}

/** No windows: always open. */
export const admissionOpen = (windows: readonly Window[] | undefined, at: number): boolean => !windows?.length || windows.some((w) => inWindow(w, at));
