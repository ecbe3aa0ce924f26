// Measured figures printed beside the test output (for closing notes), never asserted as timings.
export function report(what: string, value: string | number): void {
  process.stdout.write(`      measured: ${what} = ${value}\n`);
}

/** The PMT pid a PAT packet names (first programme). */
export function pmtPidOfPat(pat: Buffer): number {
  const p = 4 + (pat[4] ?? 0) + 1; // payload after pointer_field
  return ((pat[p + 10]! & 0x1f) << 8) | pat[p + 11]!;
}

export const pidOf = (buf: Buffer, off: number): number => ((buf[off + 1]! & 0x1f) << 8) | buf[off + 2]!;

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}
