// One ffmpeg child: argv spawn (never a shell), stdout handed through untouched, stderr parsed into
// progress and rate-limited debug lines, exit classified, stop with SIGTERM → SIGKILL escalation.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../logger.js';
import { redactUrl } from '../redact.js';
import {
  StderrParser,
  classifyLine,
  emptyProgress,
  type FfmpegErrorClass,
  type FfmpegProgress,
  type ParsedStderr,
} from './progress-parser.js';

export interface FfmpegExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Class of the last classified stderr line. */
  errorClass: FfmpegErrorClass | null;
  lastError: string | null;
  stoppedByUs: boolean;
}

export interface FfmpegProcessOptions {
  ffmpegPath: string;
  args: string[];
  logger: Logger;
  /** Added to every log line (e.g. stream_id). */
  logMeta?: Record<string, unknown>;
  onStdout: (chunk: Buffer) => void;
  onProgress?: (p: FfmpegProgress) => void;
  onExit: (exit: FfmpegExit) => void;
  /** Delay between SIGTERM and SIGKILL in stop(); default 3000. */
  killAfterMs?: number;
}

// `-loglevel error -stats`: only errors, plus the stats line (which -stats prints regardless).
const BASE_ARGS = ['-hide_banner', '-nostdin', '-loglevel', 'error', '-stats'];
export const DEFAULT_KILL_AFTER_MS = 3000;
/**
 * The longest a stopped source's process may be waited for before its lease is given back
 * anyway (ms): SIGKILL comes DEFAULT_KILL_AFTER_MS after SIGTERM; the rest covers a process
 * whose pipes outlive it (a wrapper's orphaned child), so a lease is never held forever.
 */
export const SOURCE_EXIT_WAIT_MS = DEFAULT_KILL_AFTER_MS + 2000;
const LOG_WINDOW_MS = 10_000;
const LOG_LINES_PER_WINDOW = 20;

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

// A summary line that must not replace the cause already classified.
const SUMMARY_LINE = /^Conversion failed!?$/i;

/** `ffmpeg version 5.1.6-0+deb12u1 Copyright ...` → `5.1.6-0+deb12u1`. */
export function parseFfmpegVersion(output: string): string | null {
  const first = output.split(/\r?\n/).find((l) => l.trim().length > 0);
  return first?.match(/^\s*ffmpeg\s+version\s+(\S+)/i)?.[1] ?? null;
}

const noop = (): void => {};

export class FfmpegProcess {
  private readonly opts: FfmpegProcessOptions;
  private readonly parser = new StderrParser();
  private child: ChildProcess | null = null;
  private started = false;
  private latest: FfmpegProgress = emptyProgress();
  private errorClass: FfmpegErrorClass | null = null;
  private lastError: string | null = null;
  private stoppedByUs = false;
  private exited: FfmpegExit | null = null;
  private stopPromise: Promise<FfmpegExit> | null = null;
  private readonly exitWaiters: Array<(exit: FfmpegExit) => void> = [];
  private killTimer: NodeJS.Timeout | null = null;
  private logTimer: NodeJS.Timeout | null = null;
  private loggedInWindow = 0;
  private suppressedInWindow = 0;
  private consumerErrors = 0;
  private detach: (() => void) | null = null;

  constructor(opts: FfmpegProcessOptions) {
    this.opts = opts;
  }

  /** The child's pid while it runs; null before start and after exit (the number may be reused). */
  get pid(): number | null {
    return this.exited ? null : (this.child?.pid ?? null);
  }

  get running(): boolean {
    return this.exited === null && this.child !== null && this.child.pid !== undefined;
  }

  /** Latest known values (a copy). */
  get progress(): FfmpegProgress {
    return { ...this.latest };
  }

  start(): void {
    if (this.stoppedByUs && this.child === null) return; // stop() came first: never start
    if (this.started) throw new Error('FfmpegProcess.start() called twice');
    this.started = true;

    const argv = [...BASE_ARGS, ...this.opts.args];
    let child: ChildProcess;
    try {
      child = spawn(this.opts.ffmpegPath, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      // Synchronous spawn failures (e.g. a NUL byte in an argument) are reported like ENOENT, and
      // asynchronously so that onExit never runs inside start().
      setImmediate(() => this.finish(this.spawnFailure(err)));
      return;
    }
    this.child = child;

    const onStdout = (chunk: Buffer): void => {
      try {
        this.opts.onStdout(chunk);
      } catch (err) {
        this.consumerError('onStdout', err);
      }
    };
    const onStderr = (chunk: Buffer): void => this.handleStderr(this.parser.push(chunk));
    const onPipeError = (err: Error): void => this.log('warn', 'ffmpeg pipe error', { error: err.message });
    const onError = (err: Error): void => {
      // No pid: the spawn itself failed (ENOENT, EACCES); Node emits 'close' afterwards, ignored.
      if (child.pid === undefined) this.finish(this.spawnFailure(err));
      else this.log('warn', 'ffmpeg process error', { error: err.message });
    };
    // 'close', not 'exit': it comes after stdout and stderr are drained, so onStdout has had every
    // byte and the last stderr line is in before onExit.
    const onClose = (code: number | null, signal: NodeJS.Signals | null): void => {
      this.handleStderr(this.parser.end());
      this.finish({
        code,
        signal,
        errorClass: this.errorClass,
        lastError: this.lastError,
        stoppedByUs: this.stoppedByUs,
      });
    };

    const listeners: Array<[NodeJS.EventEmitter | null, string, (...args: never[]) => void]> = [
      [child.stdout, 'data', onStdout],
      [child.stderr, 'data', onStderr],
      [child.stdout, 'error', onPipeError],
      [child.stderr, 'error', onPipeError],
      [child, 'error', onError],
      [child, 'close', onClose],
    ];
    type Any = (...args: unknown[]) => void;
    for (const [emitter, event, fn] of listeners) emitter?.on(event, fn as Any);
    this.detach = () => {
      for (const [emitter, event, fn] of listeners) emitter?.off(event, fn as Any);
      // A late 'error' with no listener would throw; these hold no reference to us.
      child.on('error', noop);
      child.stdout?.on('error', noop);
      child.stderr?.on('error', noop);
    };

    if (child.pid !== undefined) {
      this.log('debug', 'ffmpeg started', { args: argv.map(redactUrl).join(' ') });
    }
  }

  /** SIGTERM, then SIGKILL after killAfterMs; resolves on exit. Idempotent. */
  stop(): Promise<FfmpegExit> {
    if (this.exited) return Promise.resolve(this.exited);
    if (this.stopPromise) return this.stopPromise;
    this.stoppedByUs = true;
    this.stopPromise = new Promise<FfmpegExit>((resolve) => this.exitWaiters.push(resolve));

    if (!this.started) {
      this.finish({ code: null, signal: null, errorClass: null, lastError: null, stoppedByUs: true });
      return this.stopPromise;
    }
    const child = this.child;
    // No child (sync spawn failure) or no pid (async spawn failure): finish() is already on its way.
    if (child && child.pid !== undefined) {
      child.kill('SIGTERM');
      const killAfterMs = this.opts.killAfterMs ?? DEFAULT_KILL_AFTER_MS;
      this.killTimer = setTimeout(() => {
        this.killTimer = null;
        if (this.exited) return;
        this.log('warn', 'ffmpeg still running after SIGTERM, sending SIGKILL', { kill_after_ms: killAfterMs });
        child.kill('SIGKILL');
      }, killAfterMs);
      // The child handle keeps the loop alive while it matters.
      this.killTimer.unref();
    }
    return this.stopPromise;
  }

  /** SIGKILL now (no trailer, no flush): for a source that must stop this instant. */
  kill(): void {
    void this.stop();
    if (!this.exited && this.child?.pid !== undefined) this.child.kill('SIGKILL');
  }

  private spawnFailure(err: unknown): FfmpegExit {
    return {
      code: null,
      signal: null,
      errorClass: 'other',
      lastError: `cannot start ${this.opts.ffmpegPath}: ${errorMessage(err)}`,
      stoppedByUs: this.stoppedByUs,
    };
  }

  private handleStderr(parsed: ParsedStderr): void {
    if (parsed.progress) {
      Object.assign(this.latest, parsed.progress);
      if (this.opts.onProgress) {
        try {
          this.opts.onProgress({ ...this.latest });
        } catch (err) {
          this.consumerError('onProgress', err);
        }
      }
    }
    for (const line of parsed.lines) {
      const cls = classifyLine(line);
      if (cls !== null && !(SUMMARY_LINE.test(line) && this.errorClass !== null)) {
        this.errorClass = cls;
        this.lastError = redactUrl(line);
      }
      this.logLine(line);
    }
  }

  // At most LOG_LINES_PER_WINDOW lines per LOG_WINDOW_MS (window opened by its first line); the
  // rest are counted and reported once when the window closes.
  private logLine(line: string): void {
    if (this.loggedInWindow < LOG_LINES_PER_WINDOW) {
      this.loggedInWindow++;
      this.log('debug', redactUrl(line), { source: 'ffmpeg' });
    } else {
      this.suppressedInWindow++;
    }
    if (this.logTimer === null) {
      this.logTimer = setTimeout(() => this.closeLogWindow(), LOG_WINDOW_MS);
      this.logTimer.unref();
    }
  }

  private closeLogWindow(): void {
    if (this.logTimer !== null) clearTimeout(this.logTimer);
    this.logTimer = null;
    if (this.suppressedInWindow > 0) {
      this.log('debug', `${this.suppressedInWindow} ffmpeg lines suppressed`, { suppressed: this.suppressedInWindow });
    }
    this.loggedInWindow = 0;
    this.suppressedInWindow = 0;
  }

  // A throwing consumer must not take the server down; logged once, counted after.
  private consumerError(which: string, err: unknown): void {
    this.consumerErrors++;
    if (this.consumerErrors === 1) {
      this.log('warn', `ffmpeg ${which} consumer threw`, { error: errorMessage(err) });
    }
  }

  private finish(exit: FfmpegExit): void {
    if (this.exited) return;
    this.exited = exit;
    this.detach?.();
    this.detach = null;
    if (this.killTimer !== null) clearTimeout(this.killTimer);
    this.killTimer = null;
    this.closeLogWindow(); // flushes a pending "n lines suppressed" now rather than never
    if (this.consumerErrors > 1) {
      this.log('warn', `ffmpeg consumers threw ${this.consumerErrors} times`, { consumer_errors: this.consumerErrors });
    }
    this.log('debug', 'ffmpeg exited', { ...exit });
    for (const resolve of this.exitWaiters.splice(0)) resolve(exit);
    try {
      this.opts.onExit(exit);
    } catch (err) {
      this.log('error', 'ffmpeg onExit consumer threw', { error: errorMessage(err) });
    }
  }

  private log(level: 'debug' | 'warn' | 'error', message: string, extra: Record<string, unknown> = {}): void {
    this.opts.logger.log(level, message, { ...this.opts.logMeta, pid: this.child?.pid ?? null, ...extra });
  }
}
