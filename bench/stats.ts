// Small statistics and formatting helpers shared by the bench.

/** Nearest-rank percentile (p in 0..100) of an unsorted list; NaN when empty. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1]!;
}

export const median = (values: number[]): number => percentile(values, 50);

/** A number for a table: `digits` decimals, '–' when unknown. */
export function fmt(v: number | null | undefined, digits = 1): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  return v.toFixed(digits);
}

export function pct(v: number | null | undefined, digits = 0): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  return `${(v * 100).toFixed(digits)} %`;
}

/** `a / b` as "1.23×", '–' when either is unknown or b is 0. */
export function ratio(a: number | null | undefined, b: number | null | undefined, digits = 2): string {
  if (a === null || a === undefined || b === null || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '–';
  return `${(a / b).toFixed(digits)}×`;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A viewer "gets full rate" at ≥ this share of the source's byte rate over the window. */
export const FULL_RATE = 0.95;

/** How many of a group's connections got full rate over a window (-1 entries: not open for all of it). */
export function atFullRate(windowBytes: number[], seconds: number, byteRate: number): number {
  return windowBytes.filter((b) => b >= 0 && b / seconds >= FULL_RATE * byteRate).length;
}
