// The broadcasts this worker owns (BROADCAST.md §2.2–§5): one FFmpeg run per network, a lock
// per network (never one for all, §7.1), exactly one callback per programme end or failure,
// sent after the lock is released and never retried, auto-transition, the start retry gate,
// GC and shutdown. Cluster-wide ownership (the lease) is the BroadcastService's job; this
// class only ever sees networks whose lease this worker holds.
import { setTimeout as sleep } from 'node:timers/promises';
import { constants as osConstants } from 'node:os';
import { mkdir, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../../config.js';
import { AppError } from '../../errors.js';
import { FfmpegProcess, type FfmpegExit } from '../../ffmpeg/ffmpeg-process.js';
import type { Logger } from '../../logger.js';
import { redactUrl } from '../../redact.js';
import { BROADCAST_PLAYLIST, type BroadcastArgvInput } from '../../render/broadcast-argv.js';
import type { RenderResult } from '../../render/render-task.js';
import { INPUT_PROTOCOLS } from '../transcode/input-confinement.js';
import { pythonIso, sendCallback, type CallbackEvent, type CallbackPayload, type CallbackResult } from './broadcast-callback.js';
import {
  broadcastDirName, highestSegment, removeDir, segmentNumber, servableFile, sweepOrphans, wipeMedia,
} from './broadcast-files.js';
import { nextStreamConfigSchema, programmeFrom, type Programme, type StartBroadcastBody } from './broadcast-schema.js';

export type BroadcastState = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

/** The status object of §2.2. */
export interface BroadcastStatus {
  network_id: string;
  status: BroadcastState;
  current_segment_number: number;
  started_at: string;
  stream_url: string;
  hls_dir: string;
  ffmpeg_pid: number | null;
  error_message: string | null;
  bytes_written: number;
}

/** One entry of `GET /broadcast` (§2.2). */
export interface BroadcastListEntry {
  network_id: string;
  status: BroadcastState;
  current_segment_number: number;
  started_at: string;
  stream_url: string;
  ffmpeg_pid: number | null;
  metadata: Record<string, unknown>;
  bytes_written: number;
}

export interface BroadcastMetricsHooks {
  /** A run started (+1) or ended (−1). */
  running?: (delta: number) => void;
  segmentWritten?: () => void;
  callback?: (event: CallbackEvent, result: CallbackResult) => void;
}

export interface BroadcastManagerDeps {
  config: Config;
  logger: Logger;
  /** Renders a run's argv in the render threads (Transcoder.renderBroadcast). */
  render: (input: BroadcastArgvInput) => Promise<RenderResult>;
  /** The FFmpeg pids of this manager changed (the primary kills them if the worker dies). */
  onPids?: (pids: number[]) => void;
  /** Whether a network is registered anywhere in the cluster (GC phase 2 spares those). */
  isRegistered?: (id: string) => Promise<boolean>;
  metrics?: BroadcastMetricsHooks;
}

/** One FFmpeg process over one programme. */
interface Run {
  process: FfmpegProcess;
  programme: Programme;
  startNumber: number;
  startedAt: Date;
  spawnedAtMs: number;
  /** Stopped by us (stop, transition, delete, shutdown, lease loss): no callback. */
  intentional: boolean;
  exit: FfmpegExit | null;
  exited: Promise<FfmpegExit>;
  /** Segment numbers already counted in bytes_written / the segments metric. */
  counted: Set<number>;
  /** Where it writes (kept for a respawn without a missing track). */
  at: RunPlacement;
  /** Respawns so far without a requested track that does not exist (§3.1, at most 3). */
  recoveries: number;
}

interface RunPlacement {
  startNumber: number;
  discontinuity: boolean;
  dvr: boolean;
  dir: string;
}

interface Entry {
  id: string;
  dir: string;
  dvr: boolean;
  metadata: Record<string, unknown>;
  status: BroadcastState;
  run: Run;
  /** The queued `next_stream_config` (§5), or null. */
  next: Programme | null;
  errorMessage: string | null;
  bytesWritten: number;
}

interface RetryState {
  failures: number[];
  lastAttemptMs: number;
}

interface PendingCallback {
  url: string;
  payload: CallbackPayload;
}

/** Hard-coded in Python (§6): SIGTERM → SIGKILL, orphan age, byte poll, map retries. */
const KILL_AFTER_MS = 5000;
const ORPHAN_AGE_MS = 60_000;
const BYTE_POLL_MS = 1000;
const MAP_RETRIES = 3;


/** Exit code as Python reports it: a signal kill is the negative signal number. */
export function exitCodeOf(exit: FfmpegExit): number {
  if (exit.code !== null) return exit.code;
  if (exit.signal) return -(osConstants.signals[exit.signal] ?? 1);
  return -1; // never spawned
}

export class BroadcastManager {
  private readonly entries = new Map<string, Entry>();
  private readonly retries = new Map<string, RetryState>();
  private readonly locks = new Map<string, Promise<unknown>>();
  private readonly pids = new Set<number>();
  private readonly gcTimer: NodeJS.Timeout | null = null;
  private readonly pollTimer: NodeJS.Timeout;
  private closed = false;

  constructor(private readonly deps: BroadcastManagerDeps) {
    const { config } = deps;
    if (config.broadcastGcEnabled) {
      this.gcTimer = setInterval(() => void this.gc(), config.hlsGcIntervalMs);
      this.gcTimer.unref();
    }
    this.pollTimer = setInterval(() => void this.pollBytes(), BYTE_POLL_MS);
    this.pollTimer.unref();
  }

  dirOf(id: string, dvr = false): string {
    return path.join(dvr ? this.deps.config.dvrRecordingDir : this.deps.config.hlsBroadcastDir, broadcastDirName(id));
  }

  /** Registered here, or failed starts still counted: the network's lease should stay here. */
  holds(id: string): boolean {
    return this.entries.has(id) || this.retryActive(id);
  }

  has(id: string): boolean {
    return this.entries.has(id);
  }

  /** One queue per network: a slow network never delays another (§7.1). */
  private withLock<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.locks.get(id) ?? Promise.resolve();
    const next = previous.then(fn, fn);
    const settled = next.catch(() => undefined);
    this.locks.set(id, settled);
    void settled.then(() => {
      if (this.locks.get(id) === settled) this.locks.delete(id);
    });
    return next;
  }

  // ---- start (§2.2) ----

  async start(id: string, body: StartBroadcastBody): Promise<BroadcastStatus> {
    if (this.closed) throw new AppError(503, 'SHUTTING_DOWN', 'The proxy is shutting down');
    return this.withLock(id, () => this.startLocked(id, body));
  }

  private checkRetryGate(id: string, now: number): void {
    const { config } = this.deps;
    const st = this.retries.get(id);
    if (!st) return;
    st.failures = st.failures.filter((t) => now - t < config.broadcastStartRetryWindowMs);
    if (st.failures.length < config.broadcastMaxStartRetries) return;
    const waitMs = config.broadcastStartRetryCooldownMs - (now - st.lastAttemptMs);
    if (waitMs > 0) {
      throw new AppError(
        500, 'INTERNAL',
        `Exceeded max start retries for broadcast ${id}; retry allowed after ${Math.ceil(waitMs / 1000)}s`,
      );
    }
    this.retries.delete(id);
  }

  private countFailure(id: string): void {
    const now = Date.now();
    const st = this.retries.get(id) ?? { failures: [], lastAttemptMs: now };
    st.failures.push(now);
    st.lastAttemptMs = now;
    this.retries.set(id, st);
  }

  private retryActive(id: string): boolean {
    const st = this.retries.get(id);
    if (!st) return false;
    const { config } = this.deps;
    const age = Date.now() - st.lastAttemptMs;
    if (age < config.broadcastStartRetryWindowMs) return true;
    this.retries.delete(id);
    return false;
  }

  private async startLocked(id: string, body: StartBroadcastBody): Promise<BroadcastStatus> {
    const { config, logger } = this.deps;
    this.checkRetryGate(id, Date.now());
    const programme = programmeFrom(body);
    const dvr = body.dvr_mode ?? false;
    let startNumber = body.segment_start_number ?? 0;
    let discontinuity = body.add_discontinuity ?? false;

    // 1. Transition: the old run stops without a callback and numbering continues.
    const old = this.entries.get(id);
    if (old) {
      await this.stopRun(old.run);
      if (startNumber === 0) {
        startNumber = (await this.finalNumber(old.dir, old.run.startNumber)) + 1;
        discontinuity = true;
      }
      await sweepOrphans(old.dir, 0);
      this.unregister(id);
    }

    // 3. Directory; a fresh start wipes what an earlier run left.
    const dir = this.dirOf(id, dvr);
    await mkdir(dir, { recursive: true, mode: 0o755 });
    if (startNumber === 0 && !discontinuity && !dvr) await wipeMedia(dir);
    // Never reuse a number players may know (§7.4): continue after what is on disk.
    const highest = await highestSegment(dir);
    if (highest !== null && highest >= startNumber) {
      logger.info('broadcast start number moved past existing segments', { network_id: id, requested: startNumber, highest });
      startNumber = highest + 1;
      discontinuity = true;
    }

    // 4. Spawn.
    const at = { startNumber, discontinuity, dvr, dir };
    const spawnOrFail = async (p: Programme): Promise<Run> => {
      try {
        return await this.spawn(id, p, at);
      } catch (err) {
        this.unregister(id);
        this.countFailure(id);
        if (err instanceof AppError && err.status < 500) throw err;
        throw new AppError(500, 'INTERNAL', `Failed to start broadcast: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    let current = programme;
    let run = await spawnOrFail(current);
    const entry: Entry = {
      id, dir, dvr, metadata: body.metadata ?? {}, status: 'running', run,
      next: this.parseNext(id, body), errorMessage: null, bytesWritten: 0,
    };
    this.entries.set(id, entry);

    // 5. Grace: a start that dies at once is a failed start (every start takes ≥ grace). A run
    // that died because a requested track does not exist is respawned without that choice, at
    // most 3 times (§3.1's language-map recovery; judged on the exit, not on a 1.5 s window,
    // which a loaded host can miss).
    for (;;) {
      await Promise.race([run.exited, sleep(config.broadcastStartFailureGraceMs)]);
      const adjusted = run.exit && run.recoveries < MAP_RETRIES ? recoverFrom(run.exit, current) : null;
      if (!adjusted) break;
      logger.warn('broadcast track choice not available, starting without it', { network_id: id, error: run.exit?.lastError });
      run.intentional = true; // its exit is handled here: no callback
      current = adjusted;
      const recoveries = run.recoveries + 1;
      run = await spawnOrFail(current);
      run.recoveries = recoveries;
      entry.run = run;
    }
    if (run.exit && exitCodeOf(run.exit) !== 0) {
      this.unregister(id);
      this.countFailure(id);
      const msg = run.exit.lastError ?? `FFmpeg exited with code ${exitCodeOf(run.exit)}`;
      throw new AppError(500, 'INTERNAL', `Broadcast ${id} failed shortly after start: ${redactUrl(msg)}`);
    }
    this.retries.delete(id);
    logger.info('broadcast started', { network_id: id, pid: run.process.pid, start_number: startNumber, discontinuity });
    return this.statusOf(entry, await this.currentNumber(entry));
  }

  /** An invalid nested config only disables the auto-transition (§5). */
  private parseNext(id: string, body: StartBroadcastBody): Programme | null {
    const raw = body.next_stream_config;
    if (raw === undefined || raw === null) return null;
    const parsed = nextStreamConfigSchema.safeParse(raw);
    if (!parsed.success) {
      this.deps.logger.warn('next_stream_config ignored: invalid', {
        network_id: id, problems: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '),
      });
      return null;
    }
    return programmeFrom(parsed.data, {
      segmentDuration: body.segment_duration ?? 6,
      hlsListSize: body.hls_list_size ?? 20,
      callbackUrl: body.callback_url ?? null,
    });
  }

  private async spawn(
    id: string,
    programme: Programme,
    at: RunPlacement,
  ): Promise<Run> {
    const { config, logger, render } = this.deps;
    const rendered = await render({
      ...programme, ...at, subtitleSyncOffset: config.broadcastSubtitleSyncOffset,
    });
    let resolveExit!: (e: FfmpegExit) => void;
    const exited = new Promise<FfmpegExit>((r) => (resolveExit = r));
    const run: Run = {
      process: null as unknown as FfmpegProcess,
      programme, startNumber: at.startNumber, startedAt: new Date(), spawnedAtMs: Date.now(),
      intentional: false, exit: null, exited, counted: new Set(), at, recoveries: 0,
    };
    run.process = new FfmpegProcess({
      ffmpegPath: config.ffmpegPath,
      args: confineInputs(rendered.argv, config.upstreamTlsVerify),
      logger,
      logMeta: { network_id: id },
      killAfterMs: KILL_AFTER_MS,
      onStdout: () => {},
      onExit: (exit) => {
        run.exit = exit;
        resolveExit(exit);
        this.trackPid(pid, false);
        this.deps.metrics?.running?.(-1);
        void this.onRunExit(id, run, exit);
      },
    });
    run.process.start();
    const pid = run.process.pid;
    this.trackPid(pid, true);
    this.deps.metrics?.running?.(1);
    return run;
  }

  private trackPid(pid: number | null, running: boolean): void {
    if (pid === null) return;
    if (running) this.pids.add(pid);
    else this.pids.delete(pid);
    this.deps.onPids?.([...this.pids]);
  }

  // ---- exits, callbacks, auto-transition (§4.1, §4.2, §5) ----

  private async onRunExit(id: string, run: Run, exit: FfmpegExit): Promise<void> {
    if (run.intentional) return;
    const callbacks: PendingCallback[] = [];
    try {
      await this.withLock(id, () => this.handleExitLocked(id, run, exit, callbacks));
    } catch (err) {
      this.deps.logger.error('broadcast exit handling failed', { network_id: id, error: String(err) });
    }
    this.flush(callbacks);
  }

  private async handleExitLocked(id: string, run: Run, exit: FfmpegExit, callbacks: PendingCallback[]): Promise<void> {
    if (run.intentional) return;
    const entry = this.entries.get(id);
    const current = entry?.run === run ? entry : null;
    const dir = current?.dir ?? this.dirOf(id);
    if (current) await this.countBytes(current, true);
    const final = await this.finalNumber(dir, run.startNumber);
    const code = exitCodeOf(exit);
    const durationStreamed = (Date.now() - run.spawnedAtMs) / 1000;
    const dvr = current?.dvr ?? false;
    const base = (event: CallbackEvent, data: Record<string, unknown>): CallbackPayload => ({
      network_id: id, event, timestamp: pythonIso(new Date()), dvr_mode: dvr, hls_dir: dvr ? dir : null, data,
    });
    const push = (url: string | null, payload: CallbackPayload): void => {
      if (url) callbacks.push({ url, payload });
    };
    this.deps.logger.info('broadcast programme exited', { network_id: id, exit_code: code, final_segment_number: final });

    // A requested track that does not exist, seen after the start answered (a slow input):
    // respawn without that choice, in place, without a callback (§3.1).
    const adjusted = code !== 0 && current && run.recoveries < MAP_RETRIES ? recoverFrom(exit, run.programme) : null;
    if (current && adjusted) {
      this.deps.logger.warn('broadcast track choice not available, restarting without it', { network_id: id, error: exit.lastError });
      try {
        const again = await this.spawn(id, adjusted, run.at);
        again.recoveries = run.recoveries + 1;
        Object.assign(current, { run: again, status: 'running', errorMessage: null });
        return;
      } catch (err) {
        this.deps.logger.warn('broadcast respawn failed', { network_id: id, error: String(err) });
      }
    }
    if (code !== 0) {
      const error = `FFmpeg exited with code ${code}`;
      if (current) {
        current.status = 'failed';
        current.errorMessage = exit.lastError ? redactUrl(exit.lastError) : error;
        current.next = null; // a failure discards the queued programme (§5)
      }
      // The input error as detail first, marked so the editor does not count it twice (§4.2).
      if (exit.errorClass === 'input' && exit.lastError) {
        push(run.programme.callbackUrl, base('broadcast_failed', { error: redactUrl(exit.lastError), error_type: 'input_error' }));
      }
      push(run.programme.callbackUrl, base('broadcast_failed', { exit_code: code, final_segment_number: final, duration_streamed: durationStreamed, error }));
      return;
    }
    if (!current) {
      push(run.programme.callbackUrl, base('programme_ended', { exit_code: 0, final_segment_number: final, duration_streamed: durationStreamed }));
      return;
    }
    current.status = 'stopped';
    const next = current.next;
    if (!next) {
      push(run.programme.callbackUrl, base('programme_ended', { exit_code: 0, final_segment_number: final, duration_streamed: durationStreamed }));
      return;
    }
    // Auto-transition: spawn first, then tell the editor the pid it will see in status.
    current.next = null;
    let newPid: number | null = null;
    try {
      const nextRun = await this.spawn(id, next, { startNumber: final + 1, discontinuity: true, dvr: current.dvr, dir: current.dir });
      Object.assign(current, { run: nextRun, status: 'running', errorMessage: null, bytesWritten: 0 });
      newPid = nextRun.process.pid;
      await sweepOrphans(current.dir, 0);
    } catch (err) {
      current.status = 'failed';
      current.errorMessage = `Auto-transition failed: ${err instanceof Error ? err.message : String(err)}`;
      this.deps.logger.warn('broadcast auto-transition failed', { network_id: id, error: current.errorMessage });
    }
    push(next.callbackUrl ?? run.programme.callbackUrl, base('programme_ended', {
      exit_code: 0, final_segment_number: final, duration_streamed: durationStreamed, auto_transitioned: true, new_pid: newPid,
    }));
  }

  /** Sends callbacks in order, outside every lock, without anyone waiting for them. */
  private flush(callbacks: PendingCallback[]): void {
    if (callbacks.length === 0) return;
    const list = callbacks.splice(0);
    const { config, logger, metrics } = this.deps;
    void (async () => {
      for (const c of list) {
        await sendCallback(c.url, c.payload, { timeoutMs: config.broadcastCallbackTimeoutMs, logger, onResult: metrics?.callback });
      }
    })();
  }

  // ---- stop, delete, status, list (§2.3) ----

  private async stopRun(run: Run): Promise<void> {
    run.intentional = true;
    await run.process.stop();
  }

  private unregister(id: string): void {
    this.entries.delete(id);
  }

  /** Graceful stop, no callback; files kept. Null when not registered here. */
  async stop(id: string): Promise<{ final: number } | null> {
    return this.withLock(id, async () => {
      const entry = this.entries.get(id);
      if (!entry) return null;
      entry.status = 'stopping';
      await this.stopRun(entry.run);
      const final = await this.finalNumber(entry.dir, entry.run.startNumber);
      this.unregister(id);
      this.retries.delete(id);
      return { final };
    });
  }

  /** SIGKILL if registered, unregister, remove the directory (never the DVR one). */
  async delete(id: string): Promise<void> {
    await this.withLock(id, async () => {
      const entry = this.entries.get(id);
      if (entry) {
        entry.run.intentional = true;
        entry.run.process.stop();
        // SIGKILL at once (delete does not wait for a graceful end).
        const pid = entry.run.process.pid;
        if (pid !== null) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        await entry.run.exited;
        this.unregister(id);
      }
      this.retries.delete(id);
      try {
        await removeDir(this.dirOf(id));
      } catch (err) {
        throw new AppError(500, 'INTERNAL', `Could not remove the directory of broadcast ${id}: ${(err as Error).message}`);
      }
    });
  }

  async status(id: string): Promise<BroadcastStatus | null> {
    const entry = this.entries.get(id);
    return entry ? this.statusOf(entry, await this.currentNumber(entry)) : null;
  }

  async list(): Promise<BroadcastListEntry[]> {
    const out: BroadcastListEntry[] = [];
    for (const entry of this.entries.values()) {
      const s = this.statusOf(entry, await this.currentNumber(entry));
      out.push({
        network_id: s.network_id, status: s.status, current_segment_number: s.current_segment_number,
        started_at: s.started_at, stream_url: s.stream_url, ffmpeg_pid: s.ffmpeg_pid, metadata: entry.metadata,
        bytes_written: s.bytes_written,
      });
    }
    return out;
  }

  /** A file of a registered broadcast's directory, with its cache lifetime; null when not servable. */
  async file(id: string, name: string): Promise<{ path: string; maxAgeS: number } | null> {
    const entry = this.entries.get(id);
    const dir = entry?.dir ?? this.dirOf(id);
    const file = await servableFile(dir, name);
    if (!file) return null;
    // Names repeat after a full stop: cache for about one playlist window, not a day (§7.5).
    const p = entry?.run.programme;
    const window = p ? Math.max(1, p.hlsListSize || 20) * p.segmentDuration : 120;
    return { path: file, maxAgeS: Math.min(86400, window) };
  }

  private statusOf(entry: Entry, current: number): BroadcastStatus {
    return {
      network_id: entry.id,
      status: entry.status,
      current_segment_number: current,
      started_at: pythonIso(entry.run.startedAt),
      stream_url: entry.run.programme.streamUrl,
      hls_dir: entry.dir,
      ffmpeg_pid: entry.run.process.pid,
      error_message: entry.errorMessage,
      bytes_written: entry.bytesWritten,
    };
  }

  /** Highest segment on disk, floored at the run's start number (§2.2, §7.3). */
  private async currentNumber(entry: Entry): Promise<number> {
    return this.finalNumber(entry.dir, entry.run.startNumber);
  }

  private async finalNumber(dir: string, startNumber: number): Promise<number> {
    const highest = await highestSegment(dir);
    return highest === null ? startNumber : Math.max(highest, startNumber);
  }

  // ---- bytes, GC, shutdown (§4.4, §4.5) ----

  /** Adds the size of each finished segment of the current run once (the newest may still grow). */
  private async countBytes(entry: Entry, all: boolean): Promise<void> {
    const run = entry.run;
    let names: string[];
    try {
      names = await readdir(entry.dir);
    } catch {
      return;
    }
    const numbers = names.map(segmentNumber).filter((n): n is number => n !== null && n >= run.startNumber);
    const newest = Math.max(-1, ...numbers);
    for (const n of numbers) {
      if (run.counted.has(n) || (!all && n === newest)) continue;
      const name = names.find((x) => segmentNumber(x) === n)!;
      try {
        const size = (await stat(path.join(entry.dir, name))).size;
        run.counted.add(n);
        if (entry.run === run) entry.bytesWritten += size;
        this.deps.metrics?.segmentWritten?.();
      } catch {
        // deleted meanwhile by delete_segments
      }
    }
  }

  private async pollBytes(): Promise<void> {
    for (const entry of this.entries.values()) {
      if (entry.status === 'running') await this.countBytes(entry, false).catch(() => undefined);
    }
  }

  /** Phase 1: old orphans of registered runs; phase 2: unregistered directories past the age. */
  async gc(now = Date.now()): Promise<void> {
    const { config, logger } = this.deps;
    try {
      for (const entry of this.entries.values()) {
        if (!entry.dvr) await sweepOrphans(entry.dir, ORPHAN_AGE_MS, now);
      }
        const base = config.hlsBroadcastDir;
      for (const name of await readdir(base).catch(() => [] as string[])) {
        if (!name.startsWith('broadcast_')) continue;
        const id = name.slice('broadcast_'.length);
        if (this.entries.has(id)) continue;
        const dir = path.join(base, name);
        const st = await stat(dir).catch(() => null);
        if (!st?.isDirectory() || now - st.mtimeMs < config.hlsGcAgeMs) continue;
        if (await this.deps.isRegistered?.(id).catch(() => true)) continue;
        await removeDir(dir);
        logger.info('broadcast GC removed an unused directory', { dir });
      }
    } catch (err) {
      logger.warn('broadcast GC failed', { error: String(err) });
    }
  }

  /** Stops every broadcast gracefully, without callbacks (§4.5). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.gcTimer) clearInterval(this.gcTimer);
    clearInterval(this.pollTimer);
    await Promise.all([...this.entries.keys()].map((id) => this.stop(id).catch(() => null)));
  }

  /** The lease was lost: another worker may take the network, so this one stops at once. */
  async abandon(id: string): Promise<void> {
    const entry = this.entries.get(id);
    if (!entry) return;
    this.deps.logger.warn('broadcast lease lost, stopping here', { network_id: id });
    await this.stop(id);
  }

  /** Ensures the base directory exists (created at boot, §6). */
  async init(): Promise<void> {
    await mkdir(this.deps.config.hlsBroadcastDir, { recursive: true, mode: 0o755 }).catch(() => undefined);
  }

  /** The on-disk playlist of a network (tests and the unregistered fallback). */
  async playlistText(id: string): Promise<string | null> {
    return readFile(path.join(this.dirOf(id), BROADCAST_PLAYLIST), 'utf8').catch(() => null);
  }
}

/**
 * Every http(s) input (the programme, and an external or embedded subtitle read) gets the
 * transcodes' confinement: network protocols only, and the proxy's TLS verification choice.
 */
export function confineInputs(argv: readonly string[], tlsVerify: boolean): string[] {
  const out: string[] = [];
  argv.forEach((t, i) => {
    const url = argv[i + 1] ?? '';
    if (t === '-i' && /^https?:\/\//i.test(url)) {
      out.push('-protocol_whitelist', INPUT_PROTOCOLS);
      if (/^https:/i.test(url)) out.push('-tls_verify', tlsVerify ? '1' : '0');
    }
    out.push(t);
  });
  return out;
}

/** The programme without the choice that made FFmpeg refuse to start, or null (§3.1). */
export function recoverFrom(exit: FfmpegExit, p: Programme): Programme | null {
  const line = exit.lastError ?? '';
  const map = /(?:Stream map|Failed to set value) '(\d+):(a|s)/i.exec(line);
  if (map?.[2] === 'a' && p.preferredAudioLanguage !== null) return { ...p, preferredAudioLanguage: null };
  if (map?.[2] === 's' && p.subtitleLanguage !== null) return { ...p, subtitleLanguage: null };
  if (/Subtitle encoding currently only possible from text to text or bitmap to bitmap/i.test(line) && p.subtitlesEnabled) {
    return { ...p, subtitlesEnabled: false };
  }
  return null;
}
