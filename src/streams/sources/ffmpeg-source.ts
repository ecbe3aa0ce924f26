// The owner side of a transcode: one FFmpeg process whose MPEG-TS stdout feeds the Channel.
// It knows nothing of leases or requests; the session starts and stops it. With a stream
// resolver, the argv is known only once the resolver has printed the media URL.
import { FfmpegProcess, type FfmpegExit } from '../../ffmpeg/ffmpeg-process.js';
import { emptyProgress, type FfmpegProgress } from '../../ffmpeg/progress-parser.js';
import type { Logger } from '../../logger.js';
import type { Channel } from '../live/channel.js';
import type { OwnedSource } from '../live/live-session.js';
import type { FfmpegExitReason, StreamTelemetry } from '../stream-telemetry.js';

export interface FfmpegSourceOptions {
  ffmpegPath: string;
  /** The argv, or a step that finds it (a resolver run); its rejection ends the channel with it. */
  argv: string[] | ((signal: AbortSignal) => Promise<string[]>);
  channel: Channel;
  logger: Logger;
  streamId: string;
  sourceKey: string;
  killAfterMs: number;
  onPid: (pid: number | null, running: boolean) => void;
  /** Starts and exits are counted here (metrics). */
  telemetry?: StreamTelemetry;
}

function exitReason(exit: FfmpegExit): FfmpegExitReason {
  if (exit.stoppedByUs) return 'stopped';
  if (exit.errorClass === 'input') return 'input_error';
  if (exit.errorClass === 'output') return 'output_error';
  return exit.code === 0 ? 'ended' : 'error';
}

export class FfmpegSource implements OwnedSource {
  private proc: FfmpegProcess | null = null;
  private knownPid: number | null = null;
  private stopped = false;
  private readonly preparing = new AbortController();
  /** Bytes of FFmpeg's output (the channel's input). */
  bytesIn = 0;

  constructor(private readonly opts: FfmpegSourceOptions) {}

  get pid(): number | null {
    return this.proc?.pid ?? null;
  }

  get progress(): FfmpegProgress {
    return this.proc?.progress ?? emptyProgress();
  }

  start(): void {
    const { argv } = this.opts;
    if (Array.isArray(argv)) return this.spawn(argv);
    argv(this.preparing.signal).then(
      (resolved) => {
        if (!this.stopped) this.spawn(resolved);
      },
      (err: unknown) => {
        if (!this.stopped) this.opts.channel.end(err instanceof Error ? err : new Error(String(err)));
      },
    );
  }

  stop(): void {
    this.stopped = true;
    this.preparing.abort();
    if (this.proc) void this.proc.stop();
  }

  private spawn(args: string[]): void {
    const { opts } = this;
    this.proc = new FfmpegProcess({
      ffmpegPath: opts.ffmpegPath,
      args,
      logger: opts.logger,
      logMeta: { stream_id: opts.streamId, source: opts.sourceKey },
      killAfterMs: opts.killAfterMs,
      onStdout: (chunk) => {
        this.bytesIn += chunk.length;
        opts.channel.write(chunk);
      },
      onExit: (exit) => {
        opts.onPid(this.knownPid, false);
        opts.telemetry?.ffmpegExited(exitReason(exit));
        if (exit.stoppedByUs) return;
        const why = exit.lastError ?? `ffmpeg exited with ${exit.code ?? exit.signal}`;
        opts.logger.warn('ffmpeg exited', { stream_id: opts.streamId, code: exit.code, signal: exit.signal, error_class: exit.errorClass, detail: why });
        opts.channel.end(new Error(`ffmpeg ${exit.errorClass ?? 'other'} error: ${why}`));
      },
    });
    this.proc.start();
    opts.telemetry?.ffmpegStarted();
    this.knownPid = this.proc.pid;
    opts.onPid(this.knownPid, true);
  }
}
