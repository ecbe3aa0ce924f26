// How fast a live source's media time arrives compared with the wall clock, from its PCR
// (ISO/IEC 13818-1 §2.4.2.2: a 27 MHz clock whose 33-bit base counts 90 kHz). A live source
// read on time delivers one second of media per second; a worker too busy to read its
// upstream socket delivers less, and every viewer of it slows together (no viewer's socket is
// full, so only this tells it). Used by admission control.

/** PCR base units per second. */
const PCR_HZ = 90_000;
/** The 33-bit PCR base wraps here (~26.5 h). */
const PCR_WRAP = 2 ** 33;
/** One sample per this much wall time. */
const SAMPLE_MS = 100;
/** The ratio is measured over this much arrival time. */
const WINDOW_MS = 3000;
/**
 * Fewer sampled arrivals than this in the window: the source comes in bursts (an HLS segment
 * of seconds in one write, a provider sending every few seconds), and one burst's timing says
 * nothing about the worker; no ratio. A source read continuously gives ~30.
 */
const MIN_SAMPLES = 8;
/** Arrivals this far apart are the source's pace, not silence. */
const SILENCE_MS = 250;
/** A PCR that jumps by more than the wall clock plus this is a discontinuity (a splice, a loop). */
const JUMP_S = 1;

export class MediaClock {
  /** Arrival times (ms) and media seconds received up to them, oldest first. */
  private wall: number[] = [];
  private media: number[] = [];
  private lastPcr = -1;
  private lastWall = 0;
  private total = 0;

  /** Records that the PCR `pcr` (90 kHz base) arrived at `nowMs`. */
  sample(nowMs: number, pcr: number): void {
    if (this.lastPcr >= 0) {
      const d = (((pcr - this.lastPcr) % PCR_WRAP) + PCR_WRAP) % PCR_WRAP / PCR_HZ;
      if (d > (nowMs - this.lastWall) / 1000 + JUMP_S) {
        // A discontinuity: start the window again rather than count the jump.
        this.wall = [];
        this.media = [];
      } else {
        this.total += d;
      }
    }
    this.lastPcr = pcr;
    this.lastWall = nowMs;
    const n = this.wall.length;
    if (n > 0 && nowMs - this.wall[n - 1]! < SAMPLE_MS) return;
    this.wall.push(nowMs);
    this.media.push(this.total);
    while (this.wall.length > 2 && nowMs - this.wall[1]! >= WINDOW_MS) {
      this.wall.shift();
      this.media.shift();
    }
  }

  /**
   * Media seconds received per wall second over the last ~3 s of arrivals, as of `nowMs` (a
   * source silent for more than SILENCE_MS counts its silence); null until 1.5 s is measured,
   * after 5 s without a PCR (no clock to judge by), or with fewer than MIN_SAMPLES arrivals in
   * the window (a source that comes in bursts).
   */
  ratio(nowMs: number): number | null {
    if (this.wall.length < MIN_SAMPLES || nowMs - this.lastWall > 5000) return null;
    const span = Math.max(nowMs - SILENCE_MS, this.lastWall) - this.wall[0]!;
    return span >= 1500 ? (this.total - this.media[0]!) / (span / 1000) : null;
  }
}
