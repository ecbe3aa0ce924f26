// The owner side of a transcode: one FFmpeg process whose MPEG-TS stdout feeds the Channel.
// It knows nothing of leases or requests; the session starts and stops it. With a stream
// resolver, the argv is known only once the resolver has printed the media URL.
//
// A live input that is lost (FFmpeg exits on its own: the provider closed, stalled, errored)
// does not end the stream: FFmpeg is started again under the same pool key and channel, first
// on the same input, then (after STREAM_RETRY_ATTEMPTS failed runs, reason
// `ffmpeg_input_error`) on the next failover URL or the resolver's answer. Viewers keep their
// connection and get null packets meanwhile; the new FFmpeg's output joins at its first PAT
// with its discontinuity flagged. A VOD input may end: then the stream ends.
import { FfmpegProcess, type FfmpegExit } from '../../ffmpeg/ffmpeg-process.js';
import { emptyProgress, type FfmpegProgress } from '../../ffmpeg/progress-parser.js';
import type { Logger } from '../../logger.js';
import type { Channel } from '../live/channel.js';
import type { OwnedSource } from '../live/live-session.js';
import { SpliceFilter } from '../mpegts/splice.js';
import type { StreamDefinition } from '../stream-definition.js';
import type { FfmpegExitReason, StreamTelemetry } from '../stream-telemetry.js';
import { FailoverPlan, type FailoverInfo, type FailoverReason, type SourceState } from './failover-plan.js';
import { SourceError } from './http-source.js';

export interface FfmpegSourceOptions {
  ffmpegPath: string;
  /**
   * The argv FFmpeg runs for an input URL (the definition's URL or a failover one), or a step
   * that finds it (a resolver run, aborted by `signal` when the source stops).
   */
  argvFor: (def: StreamDefinition, inputUrl: string, signal: AbortSignal) => string[] | Promise<string[]>;
  def: StreamDefinition;
  channel: Channel;
  logger: Logger;
  streamId: string;
  sourceKey: string;
  killAfterMs: number;
  onPid: (pid: number | null, running: boolean) => void;
  /** Whether the input is live (restarted when lost) rather than VOD (may end). */
  live?: boolean;
  retryAttempts?: number;
  retryDelayMs?: number;
  maxFailoverAttempts?: number;
  hasViewers?: () => boolean;
  onFailover?: (info: FailoverInfo) => void;
  onFailed?: (error: SourceError) => void;
  onState?: (state: SourceState) => void;
  /** Starts and exits are counted here (metrics). */
  telemetry?: StreamTelemetry;
}

function exitReason(exit: FfmpegExit): FfmpegExitReason {
  if (exit.stoppedByUs) return 'stopped';
  if (exit.errorClass === 'input') return 'input_error';
  if (exit.errorClass === 'output') return 'output_error';
  return exit.code === 0 ? 'ended' : 'error';
}

/**
 * A run that produced output and lasted this long earns the retry budget back: an input that
 * delivers and then ends (a provider rotating its connections) restarts forever, one that
 * fails at once (no output) runs out of retries.
 */
const HEALTHY_RUN_MS = 2000;
const RESTART_MAX_MS = 30_000;

export class FfmpegSource implements OwnedSource {
  readonly plan: FailoverPlan;
  private proc: FfmpegProcess | null = null;
  private knownPid: number | null = null;
  private stopped = false;
  private runs = 0;
  private failures = 0;
  private restartDelay = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private trigger: { reason: FailoverReason; done: (switched: boolean) => void } | null = null;
  private readonly preparing = new AbortController();
  /** Bytes of FFmpeg's output (the channel's input), over every run. */
  bytesIn = 0;

  constructor(private readonly opts: FfmpegSourceOptions) {
    this.plan = new FailoverPlan({
      def: opts.def, logger: opts.logger, maxFailoverAttempts: opts.maxFailoverAttempts ?? 0, onChange: opts.onState,
    });
  }

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  get progress(): FfmpegProgress {
    return this.proc?.progress ?? emptyProgress();
  }

  /** FFmpeg processes started so far (1 + restarts). */
  get runCount(): number {
    return this.runs;
  }

  start(): void {
    this.opts.onState?.(this.plan.state());
    this.spawn();
  }

  /** Settles when FFmpeg has exited (SIGKILL after killAfterMs at the latest). */
  stop(): Promise<void> | undefined {
    this.stopped = true;
    this.preparing.abort();
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.trigger?.done(false);
    this.trigger = null;
    return this.proc?.stop().then(() => undefined);
  }

  /** Stops now: FFmpeg is killed (SIGKILL), not asked to finish (the lease is lost). */
  kill(): void {
    const proc = this.proc;
    void this.stop();
    proc?.kill();
  }

  updateDefinition(def: StreamDefinition): void {
    this.plan.update(def);
  }

  /** Restarts FFmpeg on the next input now (manual failover); false when none is left. */
  async switchNow(reason: FailoverReason): Promise<boolean> {
    if (this.stopped || !this.plan.hasAlternatives || this.trigger) return false;
    const info = await this.plan.next(reason);
    if (!info || this.stopped) return false;
    this.opts.onFailover?.(info);
    this.failures = 0;
    return new Promise<boolean>((done) => {
      this.trigger = { reason, done };
      if (this.proc) void this.proc.stop(); // its exit spawns the next one
      else done(true);
    });
  }

  private spawn(): void {
    if (this.stopped) return;
    let argv: string[] | Promise<string[]>;
    try {
      argv = this.opts.argvFor(this.plan.definition, this.plan.currentUrl, this.preparing.signal);
    } catch (err) {
      argv = Promise.reject(err);
    }
    if (Array.isArray(argv)) return this.run(argv);
    argv.then(
      (resolved) => this.run(resolved),
      (err: unknown) => {
        if (this.stopped) return;
        const error = err instanceof Error ? err : new Error(String(err));
        // A resolver that finds nothing: the next input if there is one, else the end.
        if (this.plan.hasAlternatives) void this.afterExit(error, 0, false);
        else this.fail(error, 'ffmpeg_input_error');
      },
    );
  }

  private run(args: string[]): void {
    if (this.stopped) return;
    const { opts } = this;
    const startedAt = Date.now();
    let firstOutputAt = 0;
    let lastOutputAt = 0;
    const splice = this.runs++ > 0 ? new SpliceFilter() : null;
    if (splice) opts.channel.restartInput();
    const proc: FfmpegProcess = new FfmpegProcess({
      ffmpegPath: opts.ffmpegPath,
      args,
      logger: opts.logger,
      logMeta: { stream_id: opts.streamId, source: opts.sourceKey },
      killAfterMs: opts.killAfterMs,
      onStdout: (chunk) => {
        // A stopped source passes nothing on (FFmpeg flushes after SIGTERM; a new owner may run).
        if (this.stopped) return;
        lastOutputAt = Date.now();
        if (firstOutputAt === 0) firstOutputAt = lastOutputAt;
        this.bytesIn += chunk.length;
        opts.channel.write(splice ? splice.push(chunk) : chunk);
      },
      onExit: (exit) => {
        opts.onPid(this.knownPid, false);
        opts.telemetry?.ffmpegExited(exitReason(exit));
        if (this.proc === proc) this.proc = null;
        const trigger = this.trigger;
        this.trigger = null;
        if (trigger) {
          trigger.done(true);
          return this.spawn();
        }
        if (exit.stoppedByUs || this.stopped) return;
        const why = exit.lastError ?? `ffmpeg exited with ${exit.code ?? exit.signal}`;
        opts.logger.warn('ffmpeg exited', { stream_id: opts.streamId, code: exit.code, signal: exit.signal, error_class: exit.errorClass, detail: why });
        void this.afterExit(new Error(`ffmpeg ${exit.errorClass ?? 'other'} error: ${why}`), firstOutputAt > 0 ? Date.now() - startedAt : 0, exit.code === 0);
      },
    });
    this.proc = proc;
    proc.start();
    opts.telemetry?.ffmpegStarted();
    this.knownPid = proc.pid;
    opts.onPid(this.knownPid, true);
  }

  /** FFmpeg ended on its own: restart it on the same input, the next one, or give up. */
  /** `runMs`: how long a run that produced output lasted (0 when it produced none). */
  private async afterExit(error: Error, runMs: number, clean: boolean): Promise<void> {
    const { opts } = this;
    if (!(opts.live ?? true) && clean) return opts.channel.end(); // a VOD input may end
    const reason: FailoverReason = 'ffmpeg_input_error';
    this.plan.failed(null);
    if (runMs >= HEALTHY_RUN_MS) {
      this.failures = 0;
      this.restartDelay = 0;
    }
    this.failures++;
    if (this.failures > (opts.retryAttempts ?? 3)) {
      const info = await this.plan.next(reason);
      if (this.stopped) return;
      if (info) {
        opts.onFailover?.(info);
      } else if (this.plan.hasAlternatives && opts.channel.hasData && (opts.hasViewers?.() ?? false)) {
        // Walk exhausted while viewers watch: start over at the primary after a back-off.
        this.restartDelay = Math.min(Math.max(this.restartDelay * 2, 1000), RESTART_MAX_MS);
        opts.onFailover?.(this.plan.restart());
      } else {
        return this.fail(error, reason);
      }
      this.failures = 0;
    }
    const delay = this.restartDelay || (opts.retryDelayMs ?? 1000);
    opts.logger.info('restarting ffmpeg', { stream_id: opts.streamId, source: opts.sourceKey, attempt: this.failures, delay_ms: delay });
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      this.spawn();
    }, delay);
  }

  private fail(error: Error, reason: FailoverReason): void {
    const err = new SourceError(error.message, reason, null, this.failures);
    this.opts.onFailed?.(err);
    this.opts.channel.end(error);
  }
}
