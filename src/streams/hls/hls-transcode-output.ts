// The owner's part of a transcode with HLS output: a managed directory and the FFmpeg writing
// into it. The directory is removed when the FFmpeg stops (or dies).
import { FfmpegProcess } from '../../ffmpeg/ffmpeg-process.js';
import type { FfmpegProgress } from '../../ffmpeg/progress-parser.js';
import type { Logger } from '../../logger.js';
import type { HlsOwnedPart } from './hls-session.js';
import { managedDirPattern, type ManagedDir, type ManagedOutputs } from './managed-output.js';

export interface HlsTranscodeOutputOptions {
  outputs: ManagedOutputs;
  /** The root the argv was rendered against (HLS_TEMP_DIR). */
  root: string;
  key: string;
  streamId: string;
  argv: string[];
  ffmpegPath: string;
  logger: Logger;
  killAfterMs: number;
  onPid: (pid: number | null, running: boolean) => void;
  /** FFmpeg exited by itself (the session ends). */
  fail: (err: Error) => void;
}

export class HlsTranscodeOutput implements HlsOwnedPart {
  private constructor(
    private readonly opts: HlsTranscodeOutputOptions,
    readonly dir: ManagedDir,
    private readonly proc: FfmpegProcess,
  ) {}

  /** Creates the directory and starts FFmpeg with the directory in its argv. */
  static async start(opts: HlsTranscodeOutputOptions): Promise<HlsTranscodeOutput> {
    const dir = await opts.outputs.create(opts.key);
    let pid: number | null = null;
    const proc = new FfmpegProcess({
      ffmpegPath: opts.ffmpegPath,
      args: dir.fill(opts.argv, managedDirPattern(opts.root)),
      logger: opts.logger,
      logMeta: { stream_id: opts.streamId, source: opts.key },
      killAfterMs: opts.killAfterMs,
      onStdout: () => {},
      onExit: (exit) => {
        opts.onPid(pid, false);
        void opts.outputs.release(opts.key, dir);
        if (exit.stoppedByUs) return;
        const why = exit.lastError ?? `ffmpeg exited with ${exit.code ?? exit.signal}`;
        opts.logger.warn('ffmpeg exited', { stream_id: opts.streamId, code: exit.code, signal: exit.signal, error_class: exit.errorClass, detail: why });
        opts.fail(new Error(`ffmpeg ${exit.errorClass ?? 'other'} error: ${why}`));
      },
    });
    proc.start();
    pid = proc.pid;
    opts.onPid(pid, true);
    return new HlsTranscodeOutput(opts, dir, proc);
  }

  get pid(): number | null {
    return this.proc.pid;
  }

  get progress(): FfmpegProgress {
    return this.proc.progress;
  }

  async stop(): Promise<void> {
    await this.proc.stop();
    await this.opts.outputs.release(this.opts.key, this.dir);
  }
}
