// The input options the proxy adds to a rendered transcode argv: FFmpeg's http(s) protocol
// sends `Lavf/<version>` and no custom header unless told, so providers that check the agent
// (the reason playlists carry one) refuse every transcoded channel. API.md §6.1: upstream
// requests send the stream's `user_agent` (else DEFAULT_USER_AGENT), then its `headers`.
// These go in the proxy-controlled part of the argv (immediately before the one `-i`), never
// into a user's template, so they hold whatever the template says.
import { AppError } from '../../errors.js';

export interface InputOptions {
  /** The URL the rendered argv names after `-i` (the definition's URL). */
  renderedUrl: string;
  /** What FFmpeg should open instead (a resolver's media URL); default: renderedUrl. */
  inputUrl?: string;
  userAgent: string;
  headers: Record<string, string>;
}

// RFC 9110 token for names; values may not break the CRLF-joined block FFmpeg sends.
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER_VALUE = /^[^\r\n\0]*$/;

const badHeader = (detail: string): AppError => new AppError(422, 'VALIDATION_ERROR', detail);

/**
 * FFmpeg's `-headers` value: `Name: value\r\n` per header (the CRLF after the last one too,
 * as FFmpeg's http protocol expects). Throws a 422 for a name that is not an HTTP token or a
 * value holding CR, LF or NUL (a second header smuggled in), so the block is exactly the
 * stream's headers. `User-Agent` is left out: it travels in `-user_agent`.
 */
export function headersBlock(headers: Record<string, string>): string {
  let out = '';
  for (const [name, value] of Object.entries(headers)) {
    if (!HEADER_NAME.test(name)) throw badHeader(`headers: "${name}" is not a valid header name`);
    if (!HEADER_VALUE.test(value)) throw badHeader(`headers.${name}: must not contain line breaks`);
    if (name.toLowerCase() === 'user-agent') continue;
    out += `${name}: ${value}\r\n`;
  }
  return out;
}

const isHttp = (url: string): boolean => /^https?:\/\//i.test(url);

/**
 * The argv FFmpeg runs: `-user_agent UA [-headers BLOCK]` inserted before the `-i` whose value
 * is the rendered URL, and that value replaced by `inputUrl`. Options are added only for
 * http(s) inputs (FFmpeg refuses them for pipes). An argv without that `-i` is returned as is.
 */
export function withInputOptions(argv: readonly string[], opts: InputOptions): string[] {
  const input = opts.inputUrl ?? opts.renderedUrl;
  const at = argv.findIndex((t, i) => t === '-i' && argv[i + 1] === opts.renderedUrl);
  if (at < 0) return [...argv];
  if (!HEADER_VALUE.test(opts.userAgent)) throw badHeader('user_agent: must not contain line breaks');
  const extra: string[] = [];
  if (isHttp(input)) {
    const ua = Object.entries(opts.headers).find(([k]) => k.toLowerCase() === 'user-agent')?.[1] ?? opts.userAgent;
    extra.push('-user_agent', ua);
    const block = headersBlock(opts.headers);
    if (block) extra.push('-headers', block);
  }
  return [...argv.slice(0, at), ...extra, '-i', input, ...argv.slice(at + 2)];
}
