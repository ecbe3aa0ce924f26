// Health of a live source's content, watched on its owner: an FFmpeg side process reads a
// copy of the upstream bytes on stdin and runs `silencedetect` on the first audio track.
// - silence: audio under `thresholdDb` for `durationMs` (silencedetect's silence_start,
//   until silence_end); checked every `checkIntervalMs` after `graceMs`, and
//   `failoverThreshold` silent checks in a row trigger `silence`;
// - a missing track: the source's programme has no audio or no video (read from FFmpeg's
//   input description) triggers `missing_track` once the input is probed.
// The fan-out never waits for it: a chunk the side process cannot take at once is dropped
// (silencedetect tolerates gaps), and it is restarted with each new upstream connection.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import type { Logger } from '../../logger.js';

export interface SilenceSettings {
  thresholdDb: number;
  durationMs: number;
  checkIntervalMs: number;
  failoverThreshold: number;
  graceMs: number;
}

export interface SilenceMonitorOptions {
  ffmpegPath: string;
  settings: SilenceSettings;
  logger: Logger;
  streamId: string;
  onTrigger: (reason: 'silence' | 'missing_track', detail: string) => void;
}

const STREAM_LINE = /^\s*Stream #\d+:\d+.*?: (Video|Audio):/;
const PROBED_LINE = /^(Stream mapping:|Output #0)|does not contain any stream/;
const KILL_AFTER_MS = 2000;

export class SilenceMonitor {
  private proc: ChildProcessWithoutNullStreams | null = null;
  private timer: NodeJS.Timeout | null = null;
  private startedAt = 0;
  private silentSince: number | null = null;
  private silentChecks = 0;
  private tracks = { audio: false, video: false, probed: false };
  private stopped = false;
  /** Chunks dropped because the side process was not keeping up (never waited for). */
  dropped = 0;

  constructor(private readonly opts: SilenceMonitorOptions) {}

  /** A new upstream connection: a fresh side process, grace period and track check. */
  restart(): void {
    if (this.stopped) return;
    this.kill();
    const { settings, ffmpegPath } = this.opts;
    this.startedAt = Date.now();
    this.silentSince = null;
    this.silentChecks = 0;
    this.tracks = { audio: false, video: false, probed: false };
    const proc = spawn(ffmpegPath, [
      '-hide_banner', '-nostdin', '-nostats', '-loglevel', 'info',
      '-f', 'mpegts', '-i', 'pipe:0',
      '-map', '0:a:0?', '-vn', '-sn', '-dn',
      '-af', `silencedetect=noise=${settings.thresholdDb}dB:duration=${settings.durationMs / 1000}`,
      '-f', 'null', '-',
    ], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.proc = proc;
    proc.stdin.on('error', () => undefined); // EPIPE when it exits: nothing to do
    proc.stdout.resume();
    let buf = '';
    proc.stderr.setEncoding('utf8');
    proc.stderr.on('data', (text: string) => {
      buf += text;
      let nl: number;
      while ((nl = buf.search(/[\r\n]/)) >= 0) {
        this.onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
      if (buf.length > 4096) buf = '';
    });
    proc.once('error', (err) => this.opts.logger.warn('silence monitor could not start', { stream_id: this.opts.streamId, error: err.message }));
    proc.once('exit', () => {
      if (this.proc === proc) this.proc = null;
    });
    this.timer ??= setInterval(() => this.check(), settings.checkIntervalMs);
  }

  /** A copy of upstream bytes; dropped rather than waited for when the process lags. */
  write(chunk: Buffer): void {
    const stdin = this.proc?.stdin;
    if (!stdin || stdin.destroyed || !stdin.writable) return;
    if (stdin.writableNeedDrain) {
      this.dropped++;
      return;
    }
    stdin.write(chunk);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.kill();
  }

  private kill(): void {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null) return;
    proc.stdin.destroy();
    proc.kill('SIGTERM');
    setTimeout(() => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    }, KILL_AFTER_MS).unref();
  }

  private onLine(line: string): void {
    const stream = STREAM_LINE.exec(line);
    if (stream && !this.tracks.probed) {
      if (stream[1] === 'Audio') this.tracks.audio = true;
      else this.tracks.video = true;
      return;
    }
    if (PROBED_LINE.test(line) && !this.tracks.probed) {
      this.tracks.probed = true;
      const missing = [!this.tracks.video && 'video', !this.tracks.audio && 'audio'].filter(Boolean);
      if (missing.length > 0) this.trigger('missing_track', `the source has no ${missing.join(' and no ')} track`);
      return;
    }
    if (line.includes('silence_start:')) this.silentSince ??= Date.now();
    else if (line.includes('silence_end:')) this.silentSince = null;
  }

  private check(): void {
    if (!this.proc || Date.now() - this.startedAt < this.opts.settings.graceMs) return;
    this.silentChecks = this.silentSince !== null ? this.silentChecks + 1 : 0;
    if (this.silentChecks >= this.opts.settings.failoverThreshold) {
      this.trigger('silence', `audio under ${this.opts.settings.thresholdDb} dB for ${this.silentChecks} checks`);
    }
  }

  private trigger(reason: 'silence' | 'missing_track', detail: string): void {
    this.silentChecks = 0;
    this.opts.logger.warn('source content unhealthy', { stream_id: this.opts.streamId, reason, detail });
    this.opts.onTrigger(reason, detail);
  }
}
