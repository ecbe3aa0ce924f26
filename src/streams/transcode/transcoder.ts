// Hardware detection and the render pool behind one lazy front: started on the first
// transcode (or /info), so a worker that never transcodes never spawns render threads.
import { performance } from 'node:perf_hooks';
import type { Config } from '../../config.js';
import { detectHwAccel, ffmpegArgsFor, type HwVariables } from '../../ffmpeg/hw-accel.js';
import type { Logger } from '../../logger.js';
import type { BroadcastArgvInput } from '../../render/broadcast-argv.js';
import { managedDirPattern } from '../hls/managed-output.js';
import type { Profile } from '../../render/profiles.js';
import { parseNameList } from '../../render/allow-list.js';
import { RenderPool, type RenderPoolStats } from '../../render/render-pool.js';
import type { RenderResult } from '../../render/render-task.js';
import type { StreamTelemetry } from '../stream-telemetry.js';

export interface RenderInput {
  /** A profile name, or a raw template when it starts with `-`. */
  profile: string;
  variables: Record<string, string>;
  inputUrl: string;
}

export class Transcoder {
  private started: Promise<{ hw: HwVariables; pool: RenderPool }> | null = null;
  private pool: RenderPool | null = null;

  constructor(private readonly deps: { config: Config; logger: Logger; telemetry?: StreamTelemetry }) {}

  /** The render pool's figures, or null before the first transcode started it (metrics). */
  poolStats(): RenderPoolStats | null {
    return this.pool?.stats() ?? null;
  }

  async hardware(): Promise<HwVariables & { ffmpegArgs: string[] }> {
    const { hw } = await this.start();
    return { ...hw, ffmpegArgs: ffmpegArgsFor(hw) };
  }

  async profiles(): Promise<Profile[]> {
    return (await this.start()).pool.profiles();
  }

  async render(input: RenderInput): Promise<RenderResult> {
    const { pool } = await this.start();
    const isTemplate = input.profile.startsWith('-');
    const t0 = performance.now();
    return pool.render({
      profile: isTemplate ? null : input.profile,
      template: isTemplate ? input.profile : null,
      variables: input.variables,
      inputUrl: input.inputUrl,
      // The owner creates the real directory per FFmpeg when it starts one (managed-output.ts).
      hlsDir: managedDirPattern(this.deps.config.hlsTempDir),
    }).finally(() => this.deps.telemetry?.rendered((performance.now() - t0) / 1000));
  }

  /** A broadcast run's argv (BROADCAST.md §3.1), rendered in the same threads with the same hardware. */
  async renderBroadcast(input: BroadcastArgvInput): Promise<RenderResult> {
    const { pool } = await this.start();
    return pool.render({ inputUrl: input.streamUrl, hlsDir: input.dir, broadcast: input });
  }

  async close(): Promise<void> {
    const started = this.started;
    this.started = null;
    this.pool = null;
    if (started) await (await started).pool.close();
  }

  private start(): Promise<{ hw: HwVariables; pool: RenderPool }> {
    this.started ??= (async () => {
      const { config, logger } = this.deps;
      const hw = await detectHwAccel({ ffmpegPath: config.ffmpegPath, mode: config.hwAccel });
      if (hw.fallbackReason) logger.warn('hardware acceleration unavailable, using cpu', { reason: hw.fallbackReason });
      this.pool = new RenderPool({
        profilesDir: config.profilesDir, threads: config.renderThreads, hw,
        allow: { options: parseNameList(config.templateAllowedOptions), filters: parseNameList(config.templateAllowedFilters) },
      });
      return { hw, pool: this.pool };
    })().catch((err: unknown) => {
      this.started = null;
      throw err;
    });
    return this.started;
  }
}
