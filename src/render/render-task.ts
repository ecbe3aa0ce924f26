// The piscina task: turn a profile (or a raw template) plus variables into a checked ffmpeg
// argv. Runs in a worker thread; AppErrors come back as data (`{ error }`) because piscina
// rethrows a plain Error that has lost status and code.
import { threadId } from 'node:worker_threads';
import { AppError, type ErrorCode } from '../errors.js';
import { hwTemplateVariables, type HwVariables } from '../ffmpeg/hw-accel.js';
import { buildBroadcastArgv, type BroadcastArgvInput } from './broadcast-argv.js';
import { loadProfiles, type LoadedProfiles, type Profile } from './profiles.js';
import { templateAllowList } from './allow-list.js';
import { substitute, tokenize, validateArgv } from './template.js';

export interface RenderRequest {
  profilesDir: string;
  profile: string | null;
  template: string | null;
  variables: Record<string, string>;
  inputUrl: string;
  hlsDir: string;
  hw: HwVariables;
  /** A broadcast run (BROADCAST.md §3.1) instead of a profile or template. */
  broadcast?: BroadcastArgvInput | null;
  /** The operator's additions to the template allow-list (TEMPLATE_ALLOWED_OPTIONS/_FILTERS). */
  allow?: { options: string[]; filters: string[] };
}

export interface RenderResult {
  /** ffmpeg arguments, without the leading `ffmpeg` (and without the proxy's logging flags). */
  argv: string[];
  outputFormat: 'mpegts' | 'hls';
  /** `pipe:1`, or the playlist path for HLS. */
  output: string;
  /** Profile name, or null for a raw template. */
  profile: string | null;
  /** Profile defaults overlaid with the request's variables. */
  variables: Record<string, string>;
  /** worker_threads threadId of the thread that rendered (0 = main thread). */
  threadId: number;
}

export interface RenderErrorPayload {
  status: number;
  code: ErrorCode;
  detail: string;
}

export type RenderTaskOutput = RenderResult | { error: RenderErrorPayload };

/** Variables the proxy fills itself; a request may not set them. */
export const PROXY_VARIABLES = ['input_url', 'output_args', 'hls_dir'] as const;

export const HLS_PLAYLIST = 'index.m3u8';

const invalid = (detail: string): AppError => new AppError(400, 'TEMPLATE_INVALID', detail);

// Values the tokenizer must not split or unquote (URLs and paths can hold spaces and quotes)
// are substituted as private-use markers and swapped in after tokenizing.
const MARK_OPEN = '\uE000';
const MARK_CLOSE = '\uE001';
const marker = (name: string): string => `${MARK_OPEN}${name}${MARK_CLOSE}`;

export function outputArgsFor(format: 'mpegts' | 'hls'): string {
  if (format === 'mpegts') return '-f mpegts pipe:1';
  const dir = marker('hls_dir');
  return (
    '-f hls -hls_time 4 -hls_list_size 6 -hls_flags delete_segments+independent_segments ' +
    `-hls_segment_filename ${dir}/seg_%05d.ts ${dir}/${HLS_PLAYLIST}`
  );
}

/** Whether tokens ask for HLS output themselves: `-f hls` after the input, or any `-hls_*` option. */
function wantsHls(tokens: string[]): boolean {
  const input = tokens.indexOf('-i');
  return tokens.some((t, i) => (t === '-f' && tokens[i + 1] === 'hls' && i > input) || /^-hls_/.test(t));
}

/**
 * Puts the proxy's output in place of the `{output_args}` token. An HLS template (`-f hls`,
 * `-hls_*`, or an `hls` profile) gets the managed directory's playlist (API.md §3.3: with
 * or without a default such as `{output_args|index.m3u8}`); a relative
 * `-hls_segment_filename` is placed inside that directory and `pipe:` outputs are dropped
 * (FFmpeg's HLS muxer writes files, never a pipe). Anything else gets `-f mpegts pipe:1`.
 * Absolute paths are left for validateArgv, which refuses any outside the directory.
 */
function placeOutput(tokens: string[], profileFormat: 'mpegts' | 'hls'): string[] {
  const mark = marker('output_args');
  if (tokens.some((t) => t.includes(mark) && t !== mark)) {
    throw invalid('{output_args} must stand alone as an argument');
  }
  const ownHls = wantsHls(tokens);
  if (!ownHls && profileFormat !== 'hls') {
    return tokens.flatMap((t) => (t === mark ? tokenize(outputArgsFor('mpegts')) : [t]));
  }
  const dir = marker('hls_dir');
  const out: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t === mark) {
      out.push(...(ownHls ? [`${dir}/${HLS_PLAYLIST}`] : tokenize(outputArgsFor('hls'))));
    } else if (/^pipe:\d*$/.test(t) && tokens[i - 1] !== '-i') {
      continue;
    } else if (t === '-hls_segment_filename' && i + 1 < tokens.length) {
      const v = tokens[++i]!;
      if (v.split(/[\\/]/).includes('..')) throw invalid('-hls_segment_filename may not contain ".."');
      out.push(t, v.startsWith('/') || v.includes(dir) ? v : `${dir}/${v}`);
    } else {
      out.push(t);
    }
  }
  return out;
}

/** Render with an already-loaded profile list. Pure apart from reading `threadId`. */
export function renderWith(profiles: LoadedProfiles, req: RenderRequest): RenderResult {
  const profileName = req.profile?.trim() || null;
  const rawTemplate = req.template?.trim() || null;
  if (profileName !== null && rawTemplate !== null) {
    throw invalid('Give either a profile name or a template, not both');
  }
  // A "profile" that starts with '-' is a raw template (the API accepts either in one field).
  const template = rawTemplate ?? (profileName?.startsWith('-') ? profileName : null);
  let profile: Profile | null = null;
  if (template !== null) {
    if (!template.startsWith('-')) {
      throw invalid('A raw template must start with an ffmpeg option (a "-"), e.g. "-i {input_url} ..."');
    }
  } else if (profileName !== null) {
    profile = profiles.profiles.find((p) => p.name === profileName) ?? null;
    if (!profile) {
      const names = profiles.profiles.map((p) => p.name).sort();
      const skipped = profiles.problems.length ? ` (${profiles.problems.length} profile file(s) could not be loaded)` : '';
      throw new AppError(
        400,
        'PROFILE_NOT_FOUND',
        `Profile "${profileName}" not found; available profiles: ${names.length ? names.join(', ') : '(none)'}${skipped}`,
      );
    }
  } else {
    throw invalid('A profile name or a template is required');
  }

  const requested = req.variables ?? {};
  for (const [k, v] of Object.entries(requested)) {
    if ((PROXY_VARIABLES as readonly string[]).includes(k)) {
      throw invalid(`Variable {${k}} is filled in by the proxy and cannot be set`);
    }
    if (typeof v !== 'string') throw invalid(`Variable {${k}} must be a string`);
    if (v.includes(MARK_OPEN) || v.includes(MARK_CLOSE)) throw invalid(`Variable {${k}} has invalid characters`);
  }

  const effective: Record<string, string> = { ...(profile?.variables ?? {}), ...requested };
  // Detection beats profile defaults; an explicit request beats detection.
  const vars: Record<string, string> = {
    ...(profile?.variables ?? {}),
    ...hwTemplateVariables(req.hw),
    ...requested,
    input_url: marker('input_url'),
    output_args: marker('output_args'),
    hls_dir: marker('hls_dir'),
  };

  const tokens = placeOutput(tokenize(substitute(profile?.template ?? template!, vars)), profile?.outputFormat ?? 'mpegts');
  const inputMark = marker('input_url');
  const uses = tokens.reduce((n, t) => n + t.split(inputMark).length - 1, 0);
  if (uses !== 1) {
    throw invalid(`The template must use {input_url} exactly once, as the value of -i (found ${uses})`);
  }
  const hlsMark = marker('hls_dir');
  const argv = tokens.map((t) => t.split(inputMark).join(req.inputUrl).split(hlsMark).join(req.hlsDir));
  const allow = templateAllowList(req.allow?.options, req.allow?.filters);
  const checked = validateArgv(argv, { inputUrl: req.inputUrl, hlsDir: req.hlsDir, allow });
  return {
    argv,
    outputFormat: checked.outputFormat,
    output: checked.output,
    profile: profile?.name ?? null,
    variables: effective,
    threadId,
  };
}

// Module state is per worker thread: each thread reads the directory once.
const cache = new Map<string, Promise<LoadedProfiles>>();

function profilesIn(dir: string): Promise<LoadedProfiles> {
  let p = cache.get(dir);
  if (!p) {
    p = loadProfiles(dir);
    cache.set(dir, p);
  }
  return p;
}

export default async function renderTask(req: RenderRequest): Promise<RenderTaskOutput> {
  try {
    if (req.broadcast) {
      const argv = buildBroadcastArgv(req.broadcast, req.hw);
      return { argv, outputFormat: 'hls', output: argv[argv.length - 1]!, profile: null, variables: {}, threadId };
    }
    // Raw templates do not need the directory at all.
    const needsProfiles = !req.template?.trim() && !req.profile?.trim().startsWith('-') && !!req.profile?.trim();
    const profiles = needsProfiles ? await profilesIn(req.profilesDir) : { profiles: [], problems: [] };
    return renderWith(profiles, req);
  } catch (err) {
    if (err instanceof AppError) return { error: { status: err.status, code: err.code, detail: err.message } };
    throw err;
  }
}
