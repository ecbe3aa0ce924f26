// Running a stream resolver (streamlink or yt-dlp) for a stream: the argv (never a shell), a
// private home directory so no user config, plugin or cache on the host is read or written,
// the stream's user agent, headers and cookies, and the two ways the proxy uses them:
// `url` mode prints the media URL (streamlink --stream-url, yt-dlp -g) for FFmpeg to open;
// `pipe` mode writes the media itself to stdout (streamlink -O, yt-dlp -o -).
import { execFile, spawn, type ChildProcess, type ExecFileException } from 'node:child_process';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { AppError, upstreamUnavailable } from '../../errors.js';
import { redactUrl } from '../../redact.js';
import type { ResolverSpec, StreamDefinition } from '../stream-definition.js';
import { pointsInside } from '../sources/internal-address.js';
import { checkCookiesFile, cookiesFor } from './cookies-file.js';
import { RESOLVER_BINARY_NAMES } from './resolver-args.js';

export interface ResolverEnv {
  streamlinkPath: string;
  ytdlpPath: string;
  defaultUserAgent: string;
  timeoutMs: number;
}

export type ResolverMode = 'url' | 'pipe';

/** A prepared run: the binary, its argv, its environment and the private directory to remove. */
export interface ResolverCommand {
  binary: string;
  argv: string[];
  env: NodeJS.ProcessEnv;
  workDir: string;
}

const MEDIA_EXT = /\.(ts|mts|m2ts|mp4|m4v|mkv|webm|mov|flv|aac|mp3)$/i;

/**
 * What streamlink is asked to open: plain media URLs have no plugin, so `.m3u8` goes through
 * `hls://` and a media file through `httpstream://`; any other page goes to its plugin.
 */
export function streamlinkTarget(url: string): string {
  let pathname = '';
  try {
    pathname = new URL(url).pathname;
  } catch {
    return url;
  }
  if (/\.m3u8$/i.test(pathname)) return `hls://${url}`;
  if (MEDIA_EXT.test(pathname)) return `httpstream://${url}`;
  return url;
}

export const resolverLabel = (spec: ResolverSpec): string => RESOLVER_BINARY_NAMES[spec.name];

export const resolverMissing = (spec: ResolverSpec): AppError =>
  new AppError(503, 'RESOLVER_UNAVAILABLE', `The ${resolverLabel(spec)} resolver is not installed on this proxy (Debian package "${resolverLabel(spec)}")`);

/** The last meaningful stderr line, without credentials, bounded. */
export function resolverReason(stderr: string): string {
  const lines = stderr.split(/\r?\n/).map((l) => l.trim()).filter(Boolean)
    .filter((l) => !/^\[cli\]\[info\]|^WARNING:/i.test(l));
  const pick = [...lines].reverse().find((l) => /error/i.test(l)) ?? lines[lines.length - 1] ?? 'no output';
  const clean = redactUrl(pick).replace(/; please report this issue on .*$/i, '');
  return clean.length > 300 ? `${clean.slice(0, 300)}…` : clean;
}

/** Only what a resolver needs from our environment: never API_TOKEN, Redis passwords, … */
function childEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    LANG: process.env.LANG ?? 'C.UTF-8',
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, 'config'),
    XDG_DATA_HOME: path.join(home, 'data'),
    XDG_CACHE_HOME: path.join(home, 'cache'),
    PYTHONDONTWRITEBYTECODE: '1',
  };
  for (const k of ['http_proxy', 'https_proxy', 'no_proxy', 'HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY']) {
    if (process.env[k]) env[k] = process.env[k];
  }
  return env;
}

/**
 * Prepares a run for `def` (which must have a resolver). The cookie file is checked again (it
 * may have changed since creation): a bad one is a 502 naming the problem. yt-dlp saves its
 * cookie jar back to the file it was given, so it gets a private copy, never the user's file.
 */
export async function prepareResolver(def: StreamDefinition, env: ResolverEnv, mode: ResolverMode): Promise<ResolverCommand> {
  const spec = def.resolver!;
  const workDir = await mkdtemp(path.join(os.tmpdir(), 'm3u-resolver-'));
  try {
    const ua = Object.entries(def.headers).find(([k]) => k.toLowerCase() === 'user-agent')?.[1] ?? def.userAgent ?? env.defaultUserAgent;
    const headers = Object.entries(def.headers).filter(([k]) => k.toLowerCase() !== 'user-agent');
    const cookies = spec.cookiesPath ? await checkCookiesFile(spec.cookiesPath) : null;
    if (cookies && !cookies.valid) throw upstreamUnavailable(`${resolverLabel(spec)} was not run: cookies_path: ${cookies.message}`);
    let argv: string[];
    if (spec.name === 'streamlink') {
      const target = streamlinkTarget(def.url);
      argv = [
        mode === 'url' ? '--stream-url' : '--stdout',
        '--loglevel', 'error',
        '--http-header', `User-Agent=${ua}`,
        ...headers.flatMap(([k, v]) => ['--http-header', `${k}=${v}`]),
        ...cookiesFor(cookies?.cookies ?? [], def.url).flatMap((c) => ['--http-cookie', `${c.name}=${c.value}`]),
        ...spec.options,
        target,
        spec.quality ?? 'best',
      ];
    } else {
      const jar = path.join(workDir, 'cookies.txt');
      if (spec.cookiesPath) await copyFile(spec.cookiesPath, jar);
      const hasFormat = spec.options.some((o) => o === '-f' || o === '--format');
      argv = [
        '--ignore-config', '--no-cache-dir', '--no-playlist', '--no-warnings', '--no-progress', '--quiet',
        '--user-agent', ua,
        ...headers.flatMap(([k, v]) => ['--add-header', `${k}:${v}`]),
        ...(spec.cookiesPath ? ['--cookies', jar] : []),
        // One URL for FFmpeg: a single file with both tracks where there is one.
        ...(hasFormat ? [] : ['-f', 'b/bv*+ba/bv*']),
        ...spec.options,
        ...(mode === 'url' ? ['--get-url'] : ['--output', '-']),
        '--', def.url,
      ];
    }
    const binary = spec.name === 'streamlink' ? env.streamlinkPath : env.ytdlpPath;
    return { binary, argv, env: childEnv(workDir), workDir };
  } catch (err) {
    await rm(workDir, { recursive: true, force: true });
    throw err;
  }
}

/**
 * `url` mode: runs the resolver and resolves with the first http(s) URL it prints. Rejects with
 * 503 RESOLVER_UNAVAILABLE when the binary is missing, 502 UPSTREAM_UNAVAILABLE with the
 * resolver's own reason (credentials redacted) when it fails, prints no URL or times out.
 */
export async function resolveMediaUrl(def: StreamDefinition, env: ResolverEnv, signal?: AbortSignal): Promise<string> {
  const spec = def.resolver!;
  const cmd = await prepareResolver(def, env, 'url');
  try {
    const { stdout, stderr, error } = await new Promise<{ stdout: string; stderr: string; error: ExecFileException | null }>((resolve) => {
      execFile(cmd.binary, cmd.argv, { env: cmd.env, cwd: cmd.workDir, timeout: env.timeoutMs, maxBuffer: 1024 * 1024, signal, killSignal: 'SIGKILL' },
        (err, out, errOut) => resolve({ stdout: String(out), stderr: String(errOut), error: err }));
    });
    if (error?.code === 'ENOENT') throw resolverMissing(spec);
    if (error?.name === 'AbortError') throw upstreamUnavailable(`${resolverLabel(spec)} was stopped`);
    if (error && (error as { killed?: boolean }).killed) {
      throw upstreamUnavailable(`${resolverLabel(spec)} printed no media URL within ${Math.round(env.timeoutMs / 1000)} s`);
    }
    if (error) throw upstreamUnavailable(`${resolverLabel(spec)} failed: ${resolverReason(stderr || error.message)}`);
    const url = stdout.split(/\r?\n/).map((l) => l.trim()).find((l) => /^https?:\/\//i.test(l));
    if (!url) throw upstreamUnavailable(`${resolverLabel(spec)} printed no media URL: ${resolverReason(stderr)}`);
    // The rule of redirects (internal-address.ts): a page may not send FFmpeg into the box.
    if ((await pointsInside(url).catch(() => false)) && !(await pointsInside(def.url).catch(() => false))) {
      throw upstreamUnavailable(`${resolverLabel(spec)} resolved the page to a loopback or link-local address, which is refused`);
    }
    return url;
  } finally {
    await rm(cmd.workDir, { recursive: true, force: true });
  }
}

/** `pipe` mode: the spawned resolver; its stdout is the media. The caller removes workDir. */
export function spawnResolver(cmd: ResolverCommand): ChildProcess {
  return spawn(cmd.binary, cmd.argv, { env: cmd.env, cwd: cmd.workDir, stdio: ['ignore', 'pipe', 'pipe'] });
}
