// Admission control for new viewers of one worker. Past the host's knee a new viewer does
// not add a viewer: it takes a share of bytes from every viewer already playing (the
// collapse the benchmark shows as "every viewer at 0.74× together"). So a worker that is not
// keeping up refuses new viewers with a fast 503 + Retry-After instead of a 200 that starves,
// and those already playing keep their rate.
//
// "Not keeping up" is measured, not guessed: once a second the worker samples
//   - how many of its viewers are lagging: their socket has refused bytes beyond the queue
//     budget for longer than LAG_MS (a viewer that is merely slow on its own network is one
//     of them, so a share AND a count are required), and
//   - its event-loop utilisation over that second (performance.eventLoopUtilization).
// A worker is overloaded while ≥ `laggingShare` of its viewers (and at least MIN_LAGGING of
// them) lag, or while its loop is ≥ `eluLimit` busy and some viewers lag; and always at
// `maxViewers` (0 = no cap). The state changes at most once a second, so a join costs one
// comparison.
//
// Not a rule: a busy loop alone. A worker at ~100 % utilisation still keeps 800–2,000 viewers
// at full rate on the bench, and refusing there halved the host's capacity (BENCHMARKS.md,
// 2026-11-30). A collapse where the source itself is read late (every viewer slower together,
// no socket full) is therefore not caught here; MAX_VIEWERS_PER_WORKER is the guard for it.
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { AppError } from '../../errors.js';

export interface LoadSample {
  viewers: number;
  lagging: number;
}

export interface AdmissionOptions {
  /** Viewers this worker accepts at most; 0 = no cap (MAX_VIEWERS_PER_WORKER). */
  maxViewers: number;
  /** Share of lagging viewers (0–1) from which new ones are refused; 0 = off (ADMISSION_LAGGING_SHARE). */
  laggingShare: number;
  /** Event-loop utilisation (0–1) that, with lagging viewers, means saturated. */
  eluLimit: number;
  /** Seconds a refused player is told to wait (Retry-After). */
  retryAfterS: number;
  /** Counts this worker's viewers and how many of them lag now. */
  sample: () => LoadSample;
  intervalMs?: number;
}

/** A lagging viewer must be this many, at least, before a share counts. */
const MIN_LAGGING = 10;
/** How long a viewer's socket must have refused bytes to count as lagging (ms). */
export const LAG_MS = 1000;

export class Admission {
  private overloaded = false;
  private reason = '';
  private viewers = 0;
  private elu: EventLoopUtilization = performance.eventLoopUtilization();
  private readonly timer: NodeJS.Timeout;
  /** New viewers refused since start (for stats and metrics). */
  refused = 0;

  constructor(private readonly opts: AdmissionOptions) {
    this.timer = setInterval(() => this.tick(), opts.intervalMs ?? 1000);
    this.timer.unref();
  }

  /** Throws 503 OVERLOADED (with Retry-After) when this worker takes no more viewers. */
  admit(): void {
    const { maxViewers } = this.opts;
    const full = maxViewers > 0 && this.viewers >= maxViewers;
    if (!this.overloaded && !full) {
      // Counted between ticks too, so a burst of joins cannot overshoot the cap by a second's worth.
      this.viewers++;
      return;
    }
    this.refused++;
    const why = full ? `it serves its maximum of ${maxViewers} viewers` : this.reason;
    throw new AppError(503, 'OVERLOADED', `This server cannot take another viewer now (${why}); try again shortly`, undefined,
      { 'Retry-After': String(this.opts.retryAfterS) });
  }

  get isOverloaded(): boolean {
    return this.overloaded;
  }

  close(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    const { viewers, lagging } = this.opts.sample();
    this.viewers = viewers;
    const now = performance.eventLoopUtilization();
    const elu = performance.eventLoopUtilization(now, this.elu).utilization;
    this.elu = now;
    const share = viewers > 0 ? lagging / viewers : 0;
    const { laggingShare, eluLimit } = this.opts;
    if (laggingShare > 0 && lagging >= MIN_LAGGING && share >= laggingShare) {
      this.overloaded = true;
      this.reason = `${lagging} of its ${viewers} viewers are not keeping up`;
    } else if (laggingShare > 0 && elu >= eluLimit && lagging >= MIN_LAGGING) {
      this.overloaded = true;
      this.reason = `its event loop is ${Math.round(elu * 100)} % busy and ${lagging} viewers lag`;
    } else {
      this.overloaded = false;
      this.reason = '';
    }
  }
}
