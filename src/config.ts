// Process configuration: environment variables (plus an optional `.env` file) turned into
// one typed, frozen object. Every bad variable is collected before failing, so a broken
// deployment is fixed in one round instead of one variable per restart.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseEnv } from 'node:util';
import { redactUrl } from './redact.js';

export type HwAccel = 'auto' | 'cpu' | 'nvenc' | 'vaapi' | 'qsv';
export type SharingStrategy = 'url_profile' | 'url_only' | 'disabled';
export type LogFormat = 'json' | 'pretty';
export type LogLevel = 'error' | 'warn' | 'info' | 'http' | 'verbose' | 'debug' | 'silly';
/** Express `trust proxy` setting: a boolean, a hop count, or a list of names/IPs/CIDRs. */
export type TrustProxy = boolean | number | string;

export interface Config {
  readonly host: string;
  readonly port: number;
  readonly workers: number;
  /** '' when the API is served only at `/`; otherwise e.g. '/m3u-proxy' (no trailing slash). */
  readonly rootPath: string;
  readonly apiToken: string | undefined;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;

  readonly redisEnabled: boolean;
  readonly redisUrl: string;
  /** redisUrl with the password replaced by `***`, for logs and info endpoints. */
  readonly redisUrlSafe: string;
  readonly redisHost: string;
  readonly redisPort: number;
  readonly redisDb: number;
  readonly redisPassword: string | undefined;
  readonly redisKeyPrefix: string;

  readonly transcodingPooling: boolean;
  readonly maxClientsPerSharedStream: number;
  readonly sharedStreamTimeoutMs: number;
  readonly sharedStreamGraceMs: number;
  readonly sharingStrategy: SharingStrategy;
  readonly workerId: string;
  readonly heartbeatIntervalMs: number;
  readonly cleanupIntervalMs: number;
  readonly leaseTtlMs: number;
  readonly drainTimeoutMs: number;

  readonly clientTimeoutMs: number;
  readonly streamTimeoutMs: number;
  readonly defaultUserAgent: string;
  readonly connectionTimeoutMs: number;
  readonly readTimeoutMs: number;
  readonly liveChunkTimeoutMs: number;
  readonly streamRetryAttempts: number;
  readonly streamRetryDelayMs: number;
  readonly streamRetryExponentialBackoff: boolean;
  readonly streamTotalTimeoutMs: number;
  readonly maxFailoverAttempts: number;

  readonly bitrateMonitoring: boolean;
  /** Bytes per second. */
  readonly minBitrateThreshold: number;
  readonly bitrateCheckIntervalMs: number;
  readonly bitrateFailoverThreshold: number;
  readonly bitrateMonitoringGraceMs: number;
  /** Silent-audio failover (a stream's `enable_silence_detection` / `silence_*` win). */
  readonly silenceDetection: boolean;
  readonly silenceThresholdDb: number;
  readonly silenceDurationMs: number;
  readonly silenceCheckIntervalMs: number;
  readonly silenceFailoverThreshold: number;
  readonly silenceMonitoringGraceMs: number;

  readonly strictLiveTs: boolean;
  readonly useStickySession: boolean;
  /** Ceiling of each channel's ring in bytes, whatever its bitrate or GOP (CHANNEL_BUFFER_BYTES). */
  readonly channelBufferBytes: number;
  /**
   * Milliseconds of source each channel's ring keeps (CHANNEL_BUFFER_SECONDS): by arrival age
   * and by the observed byte rate × this, plus the newest keyframe GOP a join starts at.
   */
  readonly channelBufferMs: number;
  /**
   * Milliseconds a channel may hold source reads to pass them on as one chunk
   * (CHANNEL_COALESCE_MS, 0–1000; 0: every read at once). See ChannelOptions.coalesceMs.
   */
  readonly channelCoalesceMs: number;
  /**
   * Moves a live viewer's connection to the worker of this host that owns its source, instead
   * of relaying to it (VIEWER_HANDOFF, default true). See src/http/socket-handoff.ts.
   */
  readonly viewerHandoff: boolean;
  /**
   * Live viewers a worker may hold (VIEWER_HANDOFF_SPREAD_FROM, default 400) before viewers of
   * its streams that land elsewhere stay there and are relayed; past it, SLACK more than the
   * sender. Below it every viewer moves to its stream's owner: a relay for a handful of
   * viewers costs about as much CPU as those viewers (BENCHMARKS.md, target 2).
   */
  readonly viewerHandoffSpreadFrom: number;

  readonly hlsTempDir: string;
  readonly hlsWaitTimeMs: number;
  /** Sweep of leftover HLS output directories (HLS_GC_*). */
  readonly hlsGcEnabled: boolean;
  readonly hlsGcIntervalMs: number;
  readonly hlsGcAgeMs: number;
  readonly profilesDir: string;
  readonly ffmpegPath: string;
  /** Stream resolvers (POST /streams or /transcode with `resolver`): binaries and time limit. */
  readonly streamlinkPath: string;
  readonly ytdlpPath: string;
  readonly resolverTimeoutMs: number;
  readonly hwAccel: HwAccel;
  readonly renderThreads: number;
  /** Comma-separated FFmpeg options / filters templates may use beyond the built-in allow-list (issue 13). */
  readonly templateAllowedOptions: string;
  readonly templateAllowedFilters: string;
  /** Verify upstream TLS certificates (direct, VOD, HLS, /test-connection, FFmpeg); a stream may opt out. */
  readonly upstreamTlsVerify: boolean;

  readonly metricsPublic: boolean;
  readonly trustProxy: TrustProxy;
  readonly urlSigningSecret: string | undefined;
  readonly signedUrlTtlMs: number;
  readonly maxBodyBytes: number;
  readonly viewerMaxDrops: number;
  readonly viewerStallTimeoutMs: number;
  /** Viewers one worker accepts at most; 0 = no cap. */
  readonly maxViewersPerWorker: number;
  /** Share (0–1) of a worker's viewers lagging from which it refuses new ones; 0 = off. */
  readonly admissionLaggingShare: number;
  /** Share (0–1) of its viewers a worker reading its sources late closes each second, newest first; 0 = none. */
  readonly admissionShedShare: number;
  /** ms connections may wait at the cluster primary with no worker taking any (or a backlog, with every worker taking fewer than ADMISSION_MIN_INTAKE a second) before the workers count as stalled (the primary then answers new viewers 503 itself); 0 = never. */
  readonly admissionQueueMs: number;
  /** ms a new viewer's connection may wait at the cluster primary for a worker before the primary answers it 503 itself, whatever the workers report; 0 = no limit. */
  readonly admissionMaxWaitMs: number;
  /** Connections a second each worker takes at least while a backlog waits ADMISSION_QUEUE_MS at the primary; below it on every worker the primary answers new viewers 503 itself; 0 = no such rule. */
  readonly admissionMinIntake: number;
  /** Internal relay listener of each worker (ours): bind address, port (0 = random), address others use. */
  readonly relayHost: string;
  readonly relayPort: number;
  readonly relayAdvertiseHost: string;

  /** `/broadcast/*` (BROADCAST.md §6): directories, GC switch, callback, start retries. */
  readonly hlsBroadcastDir: string;
  readonly dvrRecordingDir: string;
  readonly broadcastGcEnabled: boolean;
  readonly broadcastCallbackTimeoutMs: number;
  readonly broadcastMaxStartRetries: number;
  readonly broadcastStartRetryWindowMs: number;
  readonly broadcastStartRetryCooldownMs: number;
  readonly broadcastStartFailureGraceMs: number;
  /** Seconds (a decimal), as ffmpeg's -itsoffset takes it. */
  readonly broadcastSubtitleSyncOffset: number;
}

export class ConfigError extends Error {
  readonly problems: string[];

  constructor(problems: string[]) {
    const n = problems.length;
    super(
      `Invalid configuration (${n} problem${n === 1 ? '' : 's'}):\n` +
        problems.map((p) => `  - ${p}`).join('\n'),
    );
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export const DEFAULT_USER_AGENT =
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36';

const LOG_LEVELS = ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] as const;
const LOG_FORMATS = ['json', 'pretty'] as const;
// The Python proxy's spellings, which the editor documents (API.md §7): DEBUG, INFO and ERROR
// are winston levels already; these two are not.
const PYTHON_LOG_LEVELS: Readonly<Record<string, LogLevel>> = { warning: 'warn', critical: 'error' };
const SHARING_STRATEGIES = ['url_profile', 'url_only', 'disabled'] as const;
const HW_ACCELS = ['auto', 'cpu', 'nvenc', 'vaapi', 'qsv'] as const;

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off']);
// Node timers treat anything above 2^31-1 ms as 1 ms, so a huge timeout would fire at once.
const MAX_TIMER_MS = 2 ** 31 - 1;
const INT_RE = /^[+-]?\d+$/;
const DECIMAL_RE = /^[+-]?(\d+\.?\d*|\.\d+)$/;

type Env = Record<string, string | undefined>;

// Typed readers over one env. Each returns the default on a bad value and records a
// problem, so parsing always runs to the end and reports everything at once.
class EnvReader {
  readonly problems: string[] = [];

  constructor(
    private readonly env: Env,
    private readonly secrets: ReadonlySet<string> = new Set(),
  ) {}

  /** Trimmed value, or undefined when unset or blank. */
  raw(name: string): string | undefined {
    const v = this.env[name]?.trim();
    return v === undefined || v === '' ? undefined : v;
  }

  problem(name: string, value: string, expected: string): void {
    this.problems.push(`${name}=${this.show(name, value)}: expected ${expected}`);
  }

  str(name: string, def: string): string {
    return this.raw(name) ?? def;
  }

  optStr(name: string): string | undefined {
    return this.raw(name);
  }

  int(name: string, def: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
    const v = this.raw(name);
    if (v === undefined) return def;
    const n = Number(v);
    if (!INT_RE.test(v) || !Number.isSafeInteger(n) || n < min || n > max) {
      this.problem(name, v, max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`);
      return def;
    }
    return n;
  }

  num(name: string, def: number, min: number, max = Infinity): number {
    const v = this.raw(name);
    if (v === undefined) return def;
    const n = Number(v);
    if (!DECIMAL_RE.test(v) || !Number.isFinite(n) || n < min || n > max) {
      this.problem(name, v, max === Infinity ? `a number >= ${min}` : `a number from ${min} to ${max}`);
      return def;
    }
    return n;
  }

  /** Seconds (decimals allowed) → whole milliseconds. */
  ms(
    name: string,
    defSeconds: number,
    { allowZero = false, maxMs = MAX_TIMER_MS }: { allowZero?: boolean; maxMs?: number } = {},
  ): number {
    const def = Math.round(defSeconds * 1000);
    const v = this.raw(name);
    if (v === undefined) return def;
    const ms = Math.round(Number(v) * 1000);
    const ok =
      DECIMAL_RE.test(v) && Number.isFinite(ms) && (allowZero ? ms >= 0 : ms > 0) && ms <= maxMs;
    if (!ok) {
      const lower = allowZero ? 'a number of seconds >= 0' : 'a number of seconds > 0 (at least 0.001)';
      const upper = Number.isFinite(maxMs) ? ` and <= ${maxMs / 1000}` : '';
      this.problem(name, v, lower + upper);
      return def;
    }
    return ms;
  }

  bool(name: string, def: boolean): boolean {
    const v = this.raw(name);
    if (v === undefined) return def;
    const lower = v.toLowerCase();
    if (TRUE_WORDS.has(lower)) return true;
    if (FALSE_WORDS.has(lower)) return false;
    this.problem(name, v, 'a boolean (true/false, 1/0, yes/no, on/off)');
    return def;
  }

  oneOf<T extends string>(name: string, values: readonly T[], def: T): T {
    const v = this.raw(name);
    if (v === undefined) return def;
    const lower = v.toLowerCase();
    const hit = values.find((x) => x === lower);
    if (hit === undefined) {
      this.problem(name, v, `one of ${values.join(', ')}`);
      return def;
    }
    return hit;
  }

  private show(name: string, value: string): string {
    if (this.secrets.has(name)) return `<hidden, ${value.length} chars>`;
    return JSON.stringify(redactUrl(value));
  }
}


function readRootPath(r: EnvReader, env: Env): string {
  const rawValue = env.ROOT_PATH;
  // Unset → the default; explicitly empty or '/' → no second base path.
  if (rawValue === undefined) return '/m3u-proxy';
  const v = rawValue.trim();
  if (v === '' || /^\/+$/.test(v)) return '';
  if (!v.startsWith('/') || /[\s?#]/.test(v)) {
    r.problem('ROOT_PATH', v, "a path starting with '/' without spaces, '?' or '#' (or '/' for none)");
    return '/m3u-proxy';
  }
  return v.replace(/\/+$/, '');
}

function readWorkerId(r: EnvReader, defaultHost: string): string {
  const v = r.raw('WORKER_ID');
  if (v === undefined) {
    // The hostname is only a default; make it fit the same alphabet instead of failing.
    const cleaned = defaultHost.replace(/[^A-Za-z0-9_.-]/g, '_');
    return cleaned === '' ? 'worker' : cleaned;
  }
  if (!/^[A-Za-z0-9_.-]+$/.test(v)) {
    r.problem('WORKER_ID', v, 'only letters, digits, _ . -');
    return defaultHost;
  }
  return v;
}

function readRedisUrl(
  r: EnvReader,
  parts: Pick<Config, 'redisHost' | 'redisPort' | 'redisDb' | 'redisPassword'>,
): string {
  const v = r.raw('REDIS_URL');
  if (v !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(v);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'redis:' && url.protocol !== 'rediss:') || url.hostname === '') {
      r.problem('REDIS_URL', v, 'a redis:// or rediss:// URL');
    } else {
      return v;
    }
  }
  // Bare IPv6 addresses need brackets inside a URL.
  const { redisHost, redisPort, redisDb, redisPassword } = parts;
  const host = redisHost.includes(':') && !redisHost.startsWith('[') ? `[${redisHost}]` : redisHost;
  const auth = redisPassword !== undefined ? `:${encodeURIComponent(redisPassword)}@` : '';
  return `redis://${auth}${host}:${redisPort}/${redisDb}`;
}

function maskRedisPassword(redisUrl: string): string {
  try {
    const url = new URL(redisUrl);
    if (url.password === '') return redisUrl;
    url.password = '***';
    return url.toString();
  } catch {
    return redactUrl(redisUrl);
  }
}

function readSigningSecret(r: EnvReader): string | undefined {
  const v = r.optStr('URL_SIGNING_SECRET');
  if (v !== undefined && v.length < 16) {
    r.problem('URL_SIGNING_SECRET', v, 'at least 16 characters');
    return undefined;
  }
  return v;
}

const TRUST_PROXY_NAMES = new Set(['loopback', 'linklocal', 'uniquelocal']);

function isTrustProxyEntry(entry: string): boolean {
  if (TRUST_PROXY_NAMES.has(entry)) return true;
  const slash = entry.indexOf('/');
  if (slash === -1) return isIP(entry) !== 0;
  const ip = entry.slice(0, slash);
  const range = entry.slice(slash + 1);
  const family = isIP(ip);
  if (family === 0) return false;
  if (/^\d+$/.test(range)) return Number(range) <= (family === 4 ? 32 : 128);
  return family === 4 && isIP(range) === 4; // proxy-addr also accepts an IPv4 netmask
}

function readTrustProxy(r: EnvReader): TrustProxy {
  const v = r.raw('TRUST_PROXY');
  if (v === undefined) return 'loopback';
  const lower = v.toLowerCase();
  if (lower === 'true') return true;
  if (lower === 'false') return false;
  if (/^\d+$/.test(v)) return Number(v);
  const entries = v.split(',').map((e) => e.trim());
  if (!entries.every(isTrustProxyEntry)) {
    r.problem(
      'TRUST_PROXY',
      v,
      'true, false, a hop count, or a comma-separated list of loopback/linklocal/uniquelocal/IPs/CIDRs',
    );
    return 'loopback';
  }
  return entries.join(',');
}

export interface ParseConfigOptions {
  cpus?: number;
  hostname?: string;
  tmpdir?: string;
}

/** Validates `env` and returns a frozen Config; throws one ConfigError listing every problem. */
export function parseConfig(env: Env, opts: ParseConfigOptions = {}): Config {
  const r = new EnvReader(env, new Set(['API_TOKEN', 'REDIS_PASSWORD', 'URL_SIGNING_SECRET']));
  const cpus = Math.max(1, Math.floor(opts.cpus ?? os.availableParallelism()));
  const hostname = opts.hostname ?? os.hostname();

  // Read in table order so problems are listed in the order a person reads the docs.
  const fields: Omit<Config, 'redisUrl' | 'redisUrlSafe'> = {
    host: r.str('HOST', '0.0.0.0'),
    port: r.int('PORT', 8085, 0, 65535),
    workers: r.int('WORKERS', cpus, 1),
    rootPath: readRootPath(r, env),
    apiToken: r.optStr('API_TOKEN'),
    logLevel: PYTHON_LOG_LEVELS[r.raw('LOG_LEVEL')?.toLowerCase() ?? ''] ?? r.oneOf('LOG_LEVEL', LOG_LEVELS, 'info'),
    logFormat: r.oneOf('LOG_FORMAT', LOG_FORMATS, 'json'),

    redisEnabled: r.bool('REDIS_ENABLED', false),
    redisHost: r.str('REDIS_HOST', 'localhost'),
    // REDIS_PORT is the older name; REDIS_SERVER_PORT wins when both are set.
    redisPort: r.int(r.raw('REDIS_SERVER_PORT') !== undefined ? 'REDIS_SERVER_PORT' : 'REDIS_PORT', 6379, 1, 65535),
    redisDb: r.int('REDIS_DB', 0, 0),
    redisPassword: r.optStr('REDIS_PASSWORD'),
    redisKeyPrefix: r.str('REDIS_KEY_PREFIX', ''),

    transcodingPooling: r.bool('ENABLE_TRANSCODING_POOLING', true),
    maxClientsPerSharedStream: r.int('MAX_CLIENTS_PER_SHARED_STREAM', 10, 0),
    sharedStreamTimeoutMs: r.ms('SHARED_STREAM_TIMEOUT', 300, { allowZero: true }),
    sharedStreamGraceMs: r.ms('SHARED_STREAM_GRACE', 3, { allowZero: true }),
    sharingStrategy: r.oneOf('STREAM_SHARING_STRATEGY', SHARING_STRATEGIES, 'url_profile'),
    workerId: readWorkerId(r, hostname),
    heartbeatIntervalMs: r.ms('HEARTBEAT_INTERVAL', 30),
    cleanupIntervalMs: r.ms('CLEANUP_INTERVAL', 60),
    leaseTtlMs: r.int('LEASE_TTL_MS', 5000, 300, MAX_TIMER_MS),
    drainTimeoutMs: r.ms('DRAIN_TIMEOUT', 30, { allowZero: true }),

    clientTimeoutMs: r.ms('CLIENT_TIMEOUT', 10),
    streamTimeoutMs: r.ms('STREAM_TIMEOUT', 15),
    defaultUserAgent: r.str('DEFAULT_USER_AGENT', DEFAULT_USER_AGENT),
    connectionTimeoutMs: r.ms('DEFAULT_CONNECTION_TIMEOUT', 10),
    readTimeoutMs: r.ms('DEFAULT_READ_TIMEOUT', 30),
    liveChunkTimeoutMs: r.ms('LIVE_CHUNK_TIMEOUT_SECONDS', 15),
    streamRetryAttempts: r.int('STREAM_RETRY_ATTEMPTS', 3, 0),
    streamRetryDelayMs: r.ms('STREAM_RETRY_DELAY', 1, { allowZero: true }),
    streamRetryExponentialBackoff: r.bool('STREAM_RETRY_EXPONENTIAL_BACKOFF', false),
    streamTotalTimeoutMs: r.ms('STREAM_TOTAL_TIMEOUT', 30),
    maxFailoverAttempts: r.int('MAX_FAILOVER_ATTEMPTS', 0, 0),

    bitrateMonitoring: r.bool('ENABLE_BITRATE_MONITORING', false),
    minBitrateThreshold: r.num('MIN_BITRATE_THRESHOLD', 62500, 0),
    bitrateCheckIntervalMs: r.ms('BITRATE_CHECK_INTERVAL', 5),
    bitrateFailoverThreshold: r.int('BITRATE_FAILOVER_THRESHOLD', 3, 1),
    bitrateMonitoringGraceMs: r.ms('BITRATE_MONITORING_GRACE_PERIOD', 10, { allowZero: true }),
    silenceDetection: r.bool('ENABLE_SILENCE_DETECTION', false),
    silenceThresholdDb: r.num('SILENCE_THRESHOLD_DB', -50, -200, 0),
    silenceDurationMs: r.ms('SILENCE_DURATION', 3),
    silenceCheckIntervalMs: r.ms('SILENCE_CHECK_INTERVAL', 10),
    silenceFailoverThreshold: r.int('SILENCE_FAILOVER_THRESHOLD', 3, 1),
    silenceMonitoringGraceMs: r.ms('SILENCE_MONITORING_GRACE_PERIOD', 15, { allowZero: true }),

    strictLiveTs: r.bool('STRICT_LIVE_TS', false),
    useStickySession: r.bool('USE_STICKY_SESSION', false),
    channelBufferBytes: r.int('CHANNEL_BUFFER_BYTES', 8 * 1024 * 1024, 64 * 1024),
    channelBufferMs: r.ms('CHANNEL_BUFFER_SECONDS', 4),
    channelCoalesceMs: r.int('CHANNEL_COALESCE_MS', 50, 0, 1000),
    viewerHandoff: r.bool('VIEWER_HANDOFF', true),
    viewerHandoffSpreadFrom: r.int('VIEWER_HANDOFF_SPREAD_FROM', 400, 0),

    hlsTempDir: path.resolve(r.str('HLS_TEMP_DIR', opts.tmpdir ?? os.tmpdir())),
    hlsWaitTimeMs: r.ms('HLS_WAIT_TIME', 10),
    hlsGcEnabled: r.bool('HLS_GC_ENABLED', true),
    hlsGcIntervalMs: r.ms('HLS_GC_INTERVAL', 600),
    hlsGcAgeMs: r.ms('HLS_GC_AGE_THRESHOLD', 3600, { maxMs: Number.MAX_SAFE_INTEGER }),
    profilesDir: path.resolve(r.str('PROFILES_DIR', 'profiles')),
    ffmpegPath: r.str('FFMPEG_PATH', 'ffmpeg'),
    streamlinkPath: r.str('STREAMLINK_PATH', 'streamlink'),
    ytdlpPath: r.str('YTDLP_PATH', 'yt-dlp'),
    resolverTimeoutMs: r.ms('RESOLVER_TIMEOUT', 30),
    hwAccel: r.oneOf('HW_ACCEL', HW_ACCELS, 'auto'),
    renderThreads: r.int('RENDER_THREADS', 2, 1),
    templateAllowedOptions: readNameList(r, 'TEMPLATE_ALLOWED_OPTIONS'),
    templateAllowedFilters: readNameList(r, 'TEMPLATE_ALLOWED_FILTERS'),
    upstreamTlsVerify: r.bool('UPSTREAM_TLS_VERIFY', true),

    metricsPublic: r.bool('METRICS_PUBLIC', false),
    trustProxy: readTrustProxy(r),
    urlSigningSecret: readSigningSecret(r),
    // Not a timer, so no 24.8-day cap.
    signedUrlTtlMs: r.ms('SIGNED_URL_TTL', 21600, { maxMs: Number.MAX_SAFE_INTEGER }),
    maxBodyBytes: r.int('MAX_BODY_BYTES', 1024 * 1024, 1024),
    viewerMaxDrops: r.int('VIEWER_MAX_DROPS', 5, 1),
    viewerStallTimeoutMs: r.ms('VIEWER_STALL_TIMEOUT', 15),
    maxViewersPerWorker: r.int('MAX_VIEWERS_PER_WORKER', 0, 0),
    admissionLaggingShare: r.num('ADMISSION_LAGGING_SHARE', 0.1, 0, 1),
    admissionShedShare: r.num('ADMISSION_SHED_SHARE', 0.03, 0, 1),
    admissionQueueMs: r.int('ADMISSION_QUEUE_MS', 5000, 0, MAX_TIMER_MS),
    admissionMaxWaitMs: r.int('ADMISSION_MAX_WAIT_MS', 0, 0, MAX_TIMER_MS),
    admissionMinIntake: r.int('ADMISSION_MIN_INTAKE', 30, 0, 100_000),
    relayHost: r.str('RELAY_HOST', '127.0.0.1'),
    relayPort: r.int('RELAY_PORT', 0, 0, 65535),
    relayAdvertiseHost: r.str('RELAY_ADVERTISE_HOST', r.raw('RELAY_HOST') ?? '127.0.0.1'),

    // Literal paths, not $TMPDIR: the Python defaults (BROADCAST.md §0).
    hlsBroadcastDir: path.resolve(r.str('HLS_BROADCAST_DIR', '/tmp/m3u-proxy-broadcasts')),
    dvrRecordingDir: path.resolve(r.str('DVR_RECORDING_DIR', '/tmp/m3u-proxy-dvr')),
    broadcastGcEnabled: r.bool('BROADCAST_GC_ENABLED', true),
    broadcastCallbackTimeoutMs: r.ms('BROADCAST_CALLBACK_TIMEOUT', 3),
    broadcastMaxStartRetries: r.int('BROADCAST_MAX_START_RETRIES', 3, 1),
    broadcastStartRetryWindowMs: r.ms('BROADCAST_START_RETRY_WINDOW', 300),
    broadcastStartRetryCooldownMs: r.ms('BROADCAST_START_RETRY_COOLDOWN', 15, { allowZero: true }),
    broadcastStartFailureGraceMs: r.ms('BROADCAST_START_FAILURE_GRACE', 3, { allowZero: true }),
    broadcastSubtitleSyncOffset: r.num('BROADCAST_SUBTITLE_SYNC_OFFSET_SECONDS', 1, 0),
  };

  const redisUrl = readRedisUrl(r, fields);

  if (r.problems.length > 0) throw new ConfigError(r.problems);
  // Every field is a primitive, so a shallow freeze is a deep one.
  return Object.freeze({ ...fields, redisUrl, redisUrlSafe: maskRedisPassword(redisUrl) });
}

/** `a,b , c` → `a,b,c`; each name an FFmpeg option or filter name. */
function readNameList(r: EnvReader, name: string): string {
  const raw = r.raw(name);
  if (raw === undefined) return '';
  const names = raw.split(',').map((s) => s.trim().replace(/^-+/, '')).filter(Boolean);
  if (names.some((n) => !/^[A-Za-z0-9_+-]+$/.test(n))) r.problem(name, raw, 'a comma-separated list of FFmpeg option or filter names');
  return names.join(',');
}

export interface LoadConfigOptions {
  /** Path of the env file; defaults to $ENV_FILE, then `.env` in the cwd. */
  envFile?: string;
  /** The real environment; defaults to process.env. Never modified. */
  env?: NodeJS.ProcessEnv;
}

/**
 * Reads the env file (if any) under the real environment, then parseConfig. A missing
 * `.env` is fine; a file named explicitly (option or ENV_FILE) that is missing is an error,
 * since a typo there would otherwise go unnoticed.
 */
export function loadConfig(opts: LoadConfigOptions = {}): Config {
  const env = opts.env ?? process.env;
  const named = opts.envFile ?? (env.ENV_FILE?.trim() || undefined);
  const file = path.resolve(named ?? '.env');

  let fromFile: Env = {};
  try {
    fromFile = parseEnv(readFileSync(file, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' || named !== undefined) {
      throw new ConfigError([`env file ${file}: ${code === 'ENOENT' ? 'not found' : String(err)}`]);
    }
  }

  // A real variable wins whenever it is defined, even as '' (same rule as process.loadEnvFile).
  const merged: Env = { ...fromFile };
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined) merged[k] = v;
  }
  return parseConfig(merged);
}

/** For the entry point: a ConfigError becomes a readable message and exit code 1. */
export function exitOnConfigError(err: unknown): never {
  if (err instanceof ConfigError) {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  }
  throw err;
}
