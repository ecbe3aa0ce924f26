// Admission control for new viewers of one worker. Past the host's knee a new viewer does
// not add a viewer: it takes a share of bytes from every viewer already playing (the
// collapse the benchmark shows as "every viewer at 0.87× together"). So a worker that is not
// keeping up refuses new viewers with a fast 503 + Retry-After instead of a 200 that starves,
// and sheds its newest viewers until those left play at rate again.
//
// "Not keeping up" is measured, not guessed: once a second the worker samples
//   - how many of its viewers are lagging: their socket has refused bytes beyond the queue
//     budget for longer than LAG_MS, or (past its first SETTLE_MS) they are more than
//     BEHIND_MS behind the live edge — a host short of CPU or uplink slows every socket a
//     little, each drains every few hundred ms and none waits long, but they fall behind (a
//     viewer that is merely slow on its own network is one of them, so a share AND a count
//     are required);
//   - whether it reads its sources late: the highest media-clock ratio (Channel.clockRatio,
//     media seconds by the source's PCR per wall second) of its channels with viewers, so
//     one slow provider is not taken for a late worker;
//   - its event-loop utilisation over that second (performance.eventLoopUtilization);
//   - how late the tick itself ran: a loop that runs stretches of LOOP_STALL_MS and more
//     holds every viewer's bytes that long and reads its sources in bursts the clock cannot
//     judge (no ratio), the state a worker past its knee is in.
// A worker is *lagging* while ≥ `laggingShare` of its viewers (and at least MIN_LAGGING of
// them) lag, or while its loop is ≥ `eluLimit` busy and some viewers lag. It is *behind* once
// LATE_TICKS ticks in a row found its loop ≥ `eluLimit` busy and every channel's clock below
// CLOCK_LIMIT or the tick LOOP_STALL_MS late — a busy loop alone is no sign (a worker 100 %
// busy still keeps thousands of viewers at rate, and refusing there halved the host's
// capacity: BENCHMARKS.md), a slow clock alone is a slow provider; both together are a worker
// reading its source late, and a busy loop that stalls is one past its knee. It stays
// behind until FINE_TICKS ticks in a row are not late. While behind it refuses new viewers,
// and after SHED_AFTER ticks it closes the newest `shedShare` of its viewers each late tick
// (reason `shed`), for SHED_MAX_TICKS ticks an episode at most: refusing newcomers alone can
// leave everyone at the slow rate (the collapse sustains itself), and a cause that shedding
// does not cure must not empty the worker. It sheds the same way while most of its viewers
// (≥ CROWD_SHARE, ≥ MIN_LAGGING) lag together with its loop ≥ CROWD_ELU busy for SHED_AFTER
// ticks: viewers slowed all at once are a host past its knee, not one slow network, and
// only fewer viewers bring the rest back to rate. Always at `maxViewers` (0 = no cap). The state
// changes at most once a tick, so a join costs one comparison. Sources without a PCR (raw
// audio) or arriving in bursts (HLS segments) are judged only by lagging viewers and the cap.
import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { AppError } from '../../errors.js';

export interface LoadSample {
  viewers: number;
  lagging: number;
  /**
   * The highest media-clock ratio (Channel.clockRatio) of the channels with viewers here; null
   * if none is known. A worker reading late delays every source, a slow provider only its own,
   * so all of them must be late.
   */
  fastestClock: number | null;
}

export interface AdmissionOptions {
  /** Viewers this worker accepts at most; 0 = no cap (MAX_VIEWERS_PER_WORKER). */
  maxViewers: number;
  /** Share of lagging viewers (0–1) from which new ones are refused; 0 = off (ADMISSION_LAGGING_SHARE). */
  laggingShare: number;
  /** Event-loop utilisation (0–1) that, with lagging viewers or a late source, means saturated. */
  eluLimit: number;
  /** Share (0–1) of its viewers a worker behind its sources closes each tick, newest first; 0 = none (ADMISSION_SHED_SHARE). */
  shedShare?: number;
  /** Closes `share` (0–1, rounded up) of this worker's viewers, newest first, relay feeds excluded; returns how many. */
  shed?: (share: number) => number;
  /** Seconds a refused player is told to wait (Retry-After). */
  retryAfterS: number;
  /** Counts this worker's viewers and how many of them lag now. */
  sample: () => LoadSample;
  intervalMs?: number;
  /** This process's event-loop utilisation (0–1) since the last call; default: perf_hooks. */
  utilization?: () => number;
}

/** A lagging viewer must be this many, at least, before a share counts. */
const MIN_LAGGING = 10;
/** A channel's media clock below this (media s per wall s, over ~3 s) is read late: the bench's "at rate" is 0.95×. */
export const CLOCK_LIMIT = 0.95;
/** Late ticks in a row before a worker is behind; fine ticks in a row before it is not. */
const LATE_TICKS = 2;
const FINE_TICKS = 3;
/** Ticks behind before shedding starts (refusing newcomers alone may be enough). */
const SHED_AFTER = 2;
/** Late ticks an episode may shed in, at most (10 × 3 % ≈ a quarter of the viewers). */
const SHED_MAX_TICKS = 10;
/** How long a viewer's socket must have refused bytes to count as lagging (ms). */
export const LAG_MS = 1000;
/** How far behind the live edge a viewer must be to count as lagging (ms). */
export const BEHIND_MS = 2000;
/**
 * A viewer's first milliseconds never count as behind: it starts at a join point up to a GOP
 * old and is sent that backlog at once.
 */
export const SETTLE_MS = 5000;
/**
 * A tick this late (ms) means the loop ran one stretch about this long: every viewer's bytes
 * waited as long, and the sources were read in bursts. With the loop ≥ `eluLimit` busy it
 * counts as late whatever the media clock says: in bursts the clock reads ~1 (catching up)
 * or has no ratio (too few arrivals, as for an HLS source). Measured (bench, proxy on one
 * core, 1.5× and 2× its knee): ticks 430 and 720 ms late, then 1.5–2.5 s, before and during
 * the collapse, with the clock at 0.98–1.1 or without a ratio; a loop 100 % busy but keeping
 * up ran its ticks ≤ 270 ms late.
 */
export const LOOP_STALL_MS = 400;
/** Share of lagging viewers, and the event-loop utilisation, that make a crowd to shed from. */
const CROWD_SHARE = 0.5;
const CROWD_ELU = 0.8;

export class Admission {
  private overloaded = false;
  private reason = '';
  private viewers = 0;
  private elu: EventLoopUtilization = performance.eventLoopUtilization();
  private readonly utilization: () => number;
  private readonly timer: NodeJS.Timeout;
  private late = 0;
  private fine = 0;
  private behindTicks = 0;
  private lastTickAt = performance.now();
  private readonly intervalMs: number;
  /** Why the last late tick was late (the 503's detail). */
  private lateCause = '';
  private crowdTicks = 0;
  private shedTicks = 0;
  /** New viewers refused since start (for stats and metrics). */
  refused = 0;
  /** Viewers closed to catch up since start. */
  shed = 0;

  constructor(private readonly opts: AdmissionOptions) {
    this.utilization = opts.utilization ?? (() => {
      const now = performance.eventLoopUtilization();
      const u = performance.eventLoopUtilization(now, this.elu).utilization;
      this.elu = now;
      return u;
    });
    this.intervalMs = opts.intervalMs ?? 1000;
    this.timer = setInterval(() => {
      const now = performance.now();
      const lateMs = now - this.lastTickAt - this.intervalMs;
      this.lastTickAt = now;
      this.tick(Math.max(0, lateMs));
    }, this.intervalMs);
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

  /** This worker's viewers (joins since the last tick counted) and whether it refuses new ones (late, lagging or at the cap). */
  load(): { viewers: number; overloaded: boolean } {
    const { maxViewers } = this.opts;
    return { viewers: this.viewers, overloaded: this.overloaded || (maxViewers > 0 && this.viewers >= maxViewers) };
  }

  close(): void {
    clearInterval(this.timer);
  }

  /**
   * One sample of the load (each `intervalMs`; public for tests that drive it by hand).
   * `loopLateMs`: how late this tick ran (its timer's lateness, ms).
   */
  tick(loopLateMs = 0): void {
    const { viewers, lagging, fastestClock } = this.opts.sample();
    this.viewers = viewers;
    const elu = this.utilization();
    const share = viewers > 0 ? lagging / viewers : 0;
    const { laggingShare, eluLimit } = this.opts;
    const clockLate = fastestClock !== null && fastestClock < CLOCK_LIMIT;
    const stalled = loopLateMs >= LOOP_STALL_MS;
    const late = elu >= eluLimit && (clockLate || stalled);
    if (late) {
      this.lateCause = clockLate
        ? `it reads its sources late (media clock ${fastestClock.toFixed(2)}× real time)`
        : `its event loop stalls: a ${this.intervalMs / 1000} s tick ran ${Math.round(loopLateMs)} ms late`;
    }
    this.late = late ? this.late + 1 : 0;
    this.fine = late ? 0 : this.fine + 1;
    const behind = this.behindTicks > 0 ? this.fine < FINE_TICKS : this.late >= LATE_TICKS;
    this.behindTicks = behind ? this.behindTicks + 1 : 0;
    const crowd = laggingShare > 0 && lagging >= MIN_LAGGING && share >= CROWD_SHARE && elu >= CROWD_ELU;
    this.crowdTicks = crowd ? this.crowdTicks + 1 : 0;
    if (!behind && !crowd) this.shedTicks = 0;
    if (laggingShare > 0 && lagging >= MIN_LAGGING && share >= laggingShare) {
      this.overloaded = true;
      this.reason = `${lagging} of its ${viewers} viewers are not keeping up`;
    } else if (laggingShare > 0 && elu >= eluLimit && lagging >= MIN_LAGGING) {
      this.overloaded = true;
      this.reason = `its event loop is ${Math.round(elu * 100)} % busy and ${lagging} viewers lag`;
    } else if (behind) {
      this.overloaded = true;
      this.reason = late ? this.lateCause : `recovering: ${this.lateCause}`;
    } else {
      this.overloaded = false;
      this.reason = '';
    }
    const shedShare = this.opts.shedShare ?? 0;
    const shedding = (late && this.behindTicks > SHED_AFTER) || this.crowdTicks > SHED_AFTER;
    if (shedding && this.shedTicks < SHED_MAX_TICKS && shedShare > 0 && viewers > 0 && this.opts.shed) {
      this.shedTicks++;
      this.shed += this.opts.shed(shedShare);
    }
  }
}
