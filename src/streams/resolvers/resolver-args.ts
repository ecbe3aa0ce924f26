// `resolver_args` as m3u-editor sends them (a string, possibly empty, or an array), split like a
// shell would without ever running one, then held to an allow-list per resolver: a request
// may tune how a resolver picks and fetches a stream, never make it write a file, read a
// config or plugin from disk, run a command or send traffic elsewhere. Anything not listed is
// refused with a 422 naming the option (an allow-list, so new resolver versions' options stay
// refused until someone reads what they do).
import { parse } from 'shell-quote';
import { validationError } from '../../errors.js';

export type ResolverName = 'streamlink' | 'ytdlp';

export const RESOLVER_BINARY_NAMES: Record<ResolverName, string> = { streamlink: 'streamlink', ytdlp: 'yt-dlp' };

const MAX_ARGS = 64;
const MAX_ARG_CHARS = 1024;

/** Option spelling → whether it takes a value. */
type Allowed = Record<string, boolean>;

// streamlink 5.x: stream selection, HLS/segment tuning, retries, request headers.
const STREAMLINK: Allowed = {
  '--default-stream': true, '--stream-types': true, '--stream-sorting-excludes': true,
  '--retry-streams': true, '--retry-max': true, '--retry-open': true,
  '--stream-segment-threads': true, '--stream-segment-attempts': true, '--stream-segment-timeout': true,
  '--stream-timeout': true, '--ringbuffer-size': true,
  '--hls-live-edge': true, '--hls-segment-stream-data': false, '--hls-playlist-reload-attempts': true,
  '--hls-playlist-reload-time': true, '--hls-start-offset': true, '--hls-duration': true,
  '--hls-live-restart': false, '--hls-audio-select': true, '--hls-segment-ignore-names': true,
  '--http-header': true, '--http-cookie': true, '--http-query-param': true, '--http-timeout': true,
  '--http-no-ssl-verify': false, '--http-disable-dh': false, '--http-ignore-env': false,
  '--twitch-disable-ads': false, '--twitch-low-latency': false, '--twitch-disable-hosting': false,
  '--twitch-api-header': true, '--twitch-access-token-param': true,
};

// yt-dlp: format choice, request headers, network tuning.
const YTDLP: Allowed = {
  '-f': true, '--format': true, '-S': true, '--format-sort': true, '--format-sort-force': false,
  '--prefer-free-formats': false, '--no-prefer-free-formats': false,
  '--referer': true, '--add-header': true,
  '--geo-bypass': false, '--no-geo-bypass': false, '--geo-bypass-country': true,
  '--socket-timeout': true, '-R': true, '--retries': true, '--fragment-retries': true,
  '-N': true, '--concurrent-fragments': true, '--http-chunk-size': true,
  '--no-check-certificates': false, '--no-check-certificate': false, '--legacy-server-connect': false,
  '-4': false, '--force-ipv4': false, '-6': false, '--force-ipv6': false,
  '--no-playlist': false, '--live-from-start': false, '--no-live-from-start': false,
  '--hls-use-mpegts': false, '--no-hls-use-mpegts': false, '--hls-prefer-native': false,
};

const ALLOWED: Record<ResolverName, Allowed> = { streamlink: STREAMLINK, ytdlp: YTDLP };

// Named in the refusal, so the reason is plain (these are the dangerous ones people try).
const WHY: Array<[RegExp, string]> = [
  [/^(-o|--output|-r|--record|-R|--record-and-pipe|-P|--paths|--print-to-file|--write-.*|--logfile|--download-archive|--cache-dir)$/, 'it writes files'],
  [/^(--exec.*|-p|--player.*|-a|--batch-file|--external-downloader.*|--downloader.*|--postprocessor-args|--ppa|--use-postprocessor|--ffmpeg.*|-U|--update.*)$/, 'it runs commands'],
  [/^(--config.*|--plugin-dirs|--load-info-json|--cookies.*|--netrc.*|--http-ssl-cert.*|--alias)$/, 'it reads local files (give cookies_path for cookies)'],
  [/^(--proxy|--http-proxy|--source-address|--url|-O|--stdout|--stream-url|-g|--get-url|-j|--json)$/, 'the proxy sets it itself'],
];

const argsError = (message: string) => validationError(`resolver_args: ${message}`, [{ field: 'resolver_args', message }]);

/**
 * Splits a string like a POSIX shell (quotes group, `\` escapes) without expanding anything:
 * `$VAR` stays literal, globs stay literal, and shell operators (`|`, `;`, `&&`, `>`, …) are
 * refused, since nothing here is ever run by a shell.
 */
export function splitArgs(input: string): string[] {
  const out: string[] = [];
  for (const entry of parse(input, (name) => `$${name}`)) {
    if (typeof entry === 'string') out.push(entry);
    else if ('pattern' in entry) out.push(entry.pattern);
    else if ('comment' in entry) throw argsError('must not contain a comment (#)');
    else throw argsError(`must not contain the shell operator "${entry.op}"`);
  }
  return out;
}

/**
 * The resolver arguments a request may pass: `options` as an argv fragment (`--opt=value`
 * becomes `--opt value`, `-fbest` becomes `-f best`) and streamlink's one positional, the
 * stream `quality` (e.g. `best` or `720p,best`); yt-dlp takes no positional (the URL is the
 * stream's). 422 on anything else, naming the argument and why.
 */
export function sanitizeResolverArgs(
  name: ResolverName,
  given: string | readonly string[] | null | undefined,
): { options: string[]; quality: string | null } {
  const tokens = typeof given === 'string' ? splitArgs(given) : [...(given ?? [])];
  if (tokens.length > MAX_ARGS) throw argsError(`at most ${MAX_ARGS} arguments`);
  const allowed = ALLOWED[name];
  const options: string[] = [];
  const positionals: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.length > MAX_ARG_CHARS || /[\0\r\n]/.test(t)) {
      throw argsError(`each argument must be at most ${MAX_ARG_CHARS} characters without line breaks`);
    }
    if (!t.startsWith('-') || t === '-') {
      if (name === 'streamlink' && positionals.length === 0 && /^[A-Za-z0-9_+,.-]{1,64}$/.test(t)) {
        positionals.push(t);
        continue;
      }
      throw argsError(`"${t}" is not allowed: the URL is the stream's, and streamlink takes one stream quality`);
    }
    let opt = t;
    let value: string | undefined;
    const eq = t.indexOf('=');
    if (t.startsWith('--') && eq > 0) {
      opt = t.slice(0, eq);
      value = t.slice(eq + 1);
    } else if (!t.startsWith('--') && t.length > 2 && allowed[t.slice(0, 2)] === true) {
      opt = t.slice(0, 2); // -fbest
      value = t.slice(2);
    }
    const takesValue = allowed[opt];
    if (takesValue === undefined) {
      const why = WHY.find(([re]) => re.test(opt))?.[1] ?? 'it is not on the allow-list';
      throw argsError(`${opt} is not allowed for ${RESOLVER_BINARY_NAMES[name]}: ${why}`);
    }
    if (!takesValue) {
      if (value !== undefined) throw argsError(`${opt} takes no value`);
      options.push(opt);
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= tokens.length) throw argsError(`${opt} needs a value`);
      value = tokens[++i]!;
      if (value.length > MAX_ARG_CHARS || /[\0\r\n]/.test(value)) throw argsError(`the value of ${opt} must not contain line breaks`);
    }
    options.push(opt, value);
  }
  return { options, quality: positionals[0] ?? null };
}
