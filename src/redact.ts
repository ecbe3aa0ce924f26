// Credentials in URLs never reach a log line, an error detail, /info or a /streams field that
// is not the URL itself: one rule for the whole product, applied anywhere in a text (FFmpeg
// echoes URLs inside its messages). It covers
// - userinfo: `scheme://user:pass@host` → `scheme://***@host`;
// - Xtream Codes paths, where providers put the account in the path, not the userinfo:
//   `/live/USER/PASS/12.ts`, `/movie/U/P/x.mkv`, `/series/U/P/…`, `/timeshift/U/P/…` →
//   `/live/***/***/…`, and the short form `scheme://host/USER/PASS/12345[.ext]`;
// - query parameters that carry secrets (`get.php?username=&password=`, `token`, `api_key`,
//   `key`, `auth`, `sig`, …) → `name=***`.
// Imports nothing, so config and logger may both use it.

const USERINFO = /([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi;
const XTREAM_PATH = /(\/(?:live|movie|series|timeshift))\/([^/\s?#"']+)\/([^/\s?#"']+)\//gi;
const XTREAM_SHORT = /([a-z][a-z0-9+.-]*:\/\/[^/\s?#"']+)\/([^/\s?#"']+)\/([^/\s?#"']+)\/(\d+(?:\.[a-z0-9]{1,5})?)(?=$|[\s?#"',;)\]}])/gi;
const SECRET_PARAMS =
  /([?&;](?:user(?:name)?|pass(?:word|wd)?|pwd|token|api_?token|access_?token|auth(?:_?token)?|api_?key|apikey|key|secret|sig|signature|session|sid)=)[^&#\s"']*/gi;

/** The text with every URL credential it holds replaced by `***`. */
export function redactUrl(text: string): string {
  return text
    .replace(USERINFO, '$1***@')
    .replace(XTREAM_PATH, '$1/***/***/')
    .replace(XTREAM_SHORT, '$1/***/***/$4')
    .replace(SECRET_PARAMS, '$1***');
}

/** An object's string values redacted, in nested plain objects and arrays too (a copy). */
export function redactDeep<T>(value: T, depth = 4): T {
  if (typeof value === 'string') return redactUrl(value) as T;
  if (depth <= 0 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, depth - 1)) as T;
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return value; // Errors, Buffers, Dates: as they are
  const out: Record<string | symbol, unknown> = {};
  for (const k of Reflect.ownKeys(value)) out[k] = redactDeep((value as Record<string | symbol, unknown>)[k], depth - 1);
  return out as T;
}
