// A small piscina pool that renders ffmpeg templates off the event loop. The task returns
// errors as data; here they become real AppErrors again (instanceof holds in this thread).
import { Piscina } from 'piscina';
import { AppError } from '../errors.js';
import type { HwVariables } from '../ffmpeg/hw-accel.js';
import { loadProfiles, type LoadedProfiles, type Profile } from './profiles.js';
import type { BroadcastArgvInput } from './broadcast-argv.js';
import type { RenderRequest, RenderResult, RenderTaskOutput } from './render-task.js';

export interface RenderPoolOptions {
  profilesDir: string;
  threads: number;
  hw: HwVariables;
  /** Additions to the template allow-list (see allow-list.ts). */
  allow?: { options: string[]; filters: string[] };
}

export interface RenderInput {
  profile?: string | null;
  template?: string | null;
  variables?: Record<string, string>;
  inputUrl: string;
  hlsDir: string;
  broadcast?: BroadcastArgvInput | null;
}

export interface RenderPoolStats {
  threads: number;
  queued: number;
  completed: number;
  /** piscina's utilization: share of the pool's capacity spent running tasks (0..1). */
  utilization: number;
}

export class RenderPool {
  readonly hw: HwVariables;
  private readonly profilesDir: string;
  private readonly allow: { options: string[]; filters: string[] } | undefined;
  private readonly pool: Piscina<RenderRequest, RenderTaskOutput>;
  private loaded: Promise<LoadedProfiles> | null = null;

  constructor(opts: RenderPoolOptions) {
    this.profilesDir = opts.profilesDir;
    this.hw = opts.hw;
    this.allow = opts.allow;
    const threads = Math.max(1, Math.floor(opts.threads));
    this.pool = new Piscina<RenderRequest, RenderTaskOutput>({
      // The compiled sibling file: dist/src/render/render-task.js.
      filename: new URL('./render-task.js', import.meta.url).href,
      // All threads up front: a stream start should not wait for a thread to boot (~100 ms).
      minThreads: threads,
      maxThreads: threads,
    });
  }

  async render(input: RenderInput): Promise<RenderResult> {
    const req: RenderRequest = {
      profilesDir: this.profilesDir,
      profile: input.profile ?? null,
      template: input.template ?? null,
      variables: input.variables ?? {},
      inputUrl: input.inputUrl,
      hlsDir: input.hlsDir,
      hw: this.hw,
      broadcast: input.broadcast ?? null,
      ...(this.allow ? { allow: this.allow } : {}),
    };
    const out = await this.pool.run(req);
    if ('error' in out) throw new AppError(out.error.status, out.error.code, out.error.detail);
    return out;
  }

  /** Profiles as read in this thread (once; the threads read their own copy once too). */
  async profiles(): Promise<Profile[]> {
    return (await this.load()).profiles;
  }

  /** Files skipped while loading, one sentence each (for logs and /info). */
  async profileProblems(): Promise<string[]> {
    return (await this.load()).problems;
  }

  stats(): RenderPoolStats {
    return {
      threads: this.pool.threads.length,
      queued: this.pool.queueSize,
      completed: this.pool.completed,
      utilization: this.pool.utilization,
    };
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }

  private load(): Promise<LoadedProfiles> {
    this.loaded ??= loadProfiles(this.profilesDir);
    return this.loaded;
  }
}
