// FFmpeg argument templates: placeholder substitution, shell-like tokenizing and the safety
// check of the final argv. Pure functions (no I/O) so they run the same in the render
// threads and in tests. ffmpeg is always spawned with an argv, never through a shell, so
// tokenize() is the only "shell" there is and validateArgv() is the only gate.
import path from 'node:path';
import { AppError } from '../errors.js';
import { DEFAULT_ALLOW_LIST, DENIED_OPTIONS, filterGraphProblem, paramsProblem, type TemplateAllowList } from './allow-list.js';

const invalid = (detail: string): AppError => new AppError(400, 'TEMPLATE_INVALID', detail);

export const VAR_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Sticky: matched at the position of each `{`. The default may be empty but holds no braces.
const PLACEHOLDER_RE = /\{([A-Za-z_][A-Za-z0-9_]*)(?:\|([^{}]*))?\}/y;

interface Placeholder {
  name: string;
  def: string | undefined;
}

// One scanner for substitute() and placeholders(), so both agree on what is malformed.
function scan(template: string, onText: (s: string) => void, onVar: (p: Placeholder) => void): void {
  let i = 0;
  let text = '';
  while (i < template.length) {
    const c = template[i]!;
    if (c === '{' || c === '}') {
      if (template[i + 1] === c) {
        text += c; // `{{` / `}}` are literal braces
        i += 2;
        continue;
      }
      if (c === '}') {
        throw invalid(`Template has an unmatched "}" at position ${i}; write "}}" for a literal brace`);
      }
      PLACEHOLDER_RE.lastIndex = i;
      const m = PLACEHOLDER_RE.exec(template);
      if (!m) {
        const near = template.slice(i, i + 20);
        throw invalid(
          `Template has a malformed placeholder at position ${i} ("${near}"); use {name} or {name|default}, or "{{" for a literal brace`,
        );
      }
      if (text) onText(text);
      text = '';
      onVar({ name: m[1]!, def: m[2] });
      i += m[0].length;
      continue;
    }
    text += c;
    i += 1;
  }
  if (text) onText(text);
}

/** Names of the placeholders in a template, in order (repeats kept). Throws on bad syntax. */
export function placeholders(template: string): Array<{ name: string; default: string | undefined }> {
  const out: Array<{ name: string; default: string | undefined }> = [];
  scan(template, () => {}, (p) => out.push({ name: p.name, default: p.def }));
  return out;
}

/**
 * Replace `{name}` and `{name|default}`. A value present in `vars` wins even when it is ''
 * (e.g. `{HW}` on CPU); values are inserted as text and never re-scanned.
 */
export function substitute(template: string, vars: Record<string, string>): string {
  let out = '';
  scan(
    template,
    (s) => {
      out += s;
    },
    ({ name, def }) => {
      // hasOwn: `{constructor}` must not resolve through the prototype.
      if (Object.hasOwn(vars, name)) out += vars[name];
      else if (def !== undefined) out += def;
      else throw invalid(`Template variable {${name}} has no value and no default`);
    },
  );
  return out;
}

const SAFE_ARG_RE = /^[A-Za-z0-9_\-+=:,./@%^]+$/;

/** Quote one argument so that tokenize() gives it back unchanged. */
export function quoteArg(s: string): string {
  if (SAFE_ARG_RE.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * Shell-like split: whitespace separates; '...' is literal; "..." is literal except `\"`,
 * `\\`; outside quotes `\x` is x and `\<newline>` joins lines. Adjacent parts join into one
 * token (`a"b c"` → `ab c`); `""` is an empty token. Quotes are consumed, never kept.
 */
export function tokenize(s: string): string[] {
  const tokens: string[] = [];
  let cur = '';
  let inToken = false;
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') {
      if (inToken) tokens.push(cur);
      cur = '';
      inToken = false;
      i += 1;
    } else if (c === "'") {
      const end = s.indexOf("'", i + 1);
      if (end < 0) throw invalid(`Template has an unbalanced single quote at position ${i}`);
      cur += s.slice(i + 1, end);
      inToken = true;
      i = end + 1;
    } else if (c === '"') {
      let j = i + 1;
      for (;;) {
        if (j >= s.length) throw invalid(`Template has an unbalanced double quote at position ${i}`);
        const d = s[j]!;
        if (d === '"') break;
        // Inside "..." only \" and \\ are escapes; other backslashes reach ffmpeg (filter escapes).
        if (d === '\\' && (s[j + 1] === '"' || s[j + 1] === '\\')) {
          cur += s[j + 1];
          j += 2;
        } else {
          cur += d;
          j += 1;
        }
      }
      inToken = true;
      i = j + 1;
    } else if (c === '\\') {
      if (i + 1 >= s.length) throw invalid('Template ends with a lone backslash');
      const next = s[i + 1]!;
      if (next === '\n') {
        i += 2; // line continuation
        continue;
      }
      cur += next;
      inToken = true;
      i += 2;
    } else {
      cur += c;
      inToken = true;
      i += 1;
    }
  }
  if (inToken) tokens.push(cur);
  return tokens;
}

// ffmpeg options that take no value; every other option takes exactly one. Needed to tell
// option values from output files, since a second output file would write anywhere.
const FLAG_OPTIONS = new Set([
  'y', 'n', 'ignore_unknown', 'copy_unknown', 'recast_media', 'benchmark', 'benchmark_all',
  'stats', 'debug_ts', 'copyts', 'start_at_zero', 'shortest', 'bitexact', 'xerror', 'dump',
  'hex', 'vn', 'an', 'sn', 'dn', 're', 'accurate_seek', 'autorotate', 'autoscale',
  'fix_sub_duration', 'stdin', 'hide_banner', 'find_stream_info', 'psnr', 'qphist', 'copyinkf',
  'ignore_chapters', 'deinterlace', 'intra', 'sameq', 'same_quant', 'vstats', 'report',
  'L', 'h', '?', 'help', '-help', 'version', 'buildconf', 'formats', 'muxers', 'demuxers',
  'devices', 'codecs', 'decoders', 'encoders', 'bsfs', 'protocols', 'filters', 'pix_fmts',
  'layouts', 'sample_fmts', 'colors', 'hwaccels', 'dispositions',
]);

const FILTER_OPTIONS = new Set(['vf', 'af', 'filter', 'filter_complex', 'lavfi']);

// Network protocols an input may use (plus stdin); local paths and wrapper protocols such
// as concat:, subfile:, cache: or crypto: could read local files.
const INPUT_SCHEMES = new Set([
  'http', 'https', 'hls+http', 'hls+https', 'rtmp', 'rtmps', 'rtmpt', 'rtmpe', 'rtmpte', 'rtmpts',
  'rtsp', 'rtsps', 'rtp', 'srtp', 'udp', 'srt', 'tcp', 'tls', 'mms', 'mmsh', 'mmst', 'rist',
]);

function optionBase(token: string): string {
  // `-c:v` → `c`, `-filter:a:0` → `filter`
  return token.slice(1).split(':')[0]!;
}

/** Whether an option (base name, e.g. `sn`) takes no value, as FFmpeg parses its argv. */
export function isFlag(base: string): boolean {
  return FLAG_OPTIONS.has(base) || (base.startsWith('no') && FLAG_OPTIONS.has(base.slice(2)));
}

function isInside(dir: string, p: string): boolean {
  const rel = path.relative(dir, p);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

function inputAllowed(url: string): boolean {
  if (url === '-' || url === 'pipe:' || url === 'pipe:0') return true;
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url);
  return !!m && INPUT_SCHEMES.has(m[1]!.toLowerCase());
}

/**
 * Check a rendered argv (without the leading `ffmpeg`): one input, the expected URL; nothing
 * that reads local files; exactly one output, the last token: `pipe:1` (MPEG-TS) or, for HLS,
 * an absolute path inside `hlsDir`.
 */
export function validateArgv(
  argv: string[],
  opts: { inputUrl: string; hlsDir: string; allow?: TemplateAllowList },
): { outputFormat: 'mpegts' | 'hls'; output: string } {
  if (argv.length === 0) throw invalid('The template renders to no arguments');
  const allow = opts.allow ?? DEFAULT_ALLOW_LIST;

  let inputs = 0;
  let inputIndex = -1;
  let outputFormat: string | null = null; // last -f after the input
  let hlsOptions = false;
  const segmentFilenames: string[] = []; // every one: a repeated option must not hide one
  const positionals: number[] = [];

  for (const t of argv) {
    // The input URL is only ever a URL (its scheme is checked at -i): `?movie=1` is harmless.
    if (t === opts.inputUrl) continue;
    const plain = t.replace(/['"\\]/g, '');
    if (/(^|[^A-Za-z0-9_])a?movie(@[A-Za-z0-9_]*)?=/i.test(plain) || plain.includes('movie=')) {
      throw invalid(`Argument "${t}" uses the movie/amovie filter, which reads local files`);
    }
    if (/^file:/i.test(t)) throw invalid(`Argument "${t}" is a local file URL; local files may not be read`);
    if (/(^|[:=,])textfile=/i.test(plain)) throw invalid(`Argument "${t}" reads a local text file`);
  }

  for (let i = 0; i < argv.length; i++) {
    const t = argv[i]!;
    if (!t.startsWith('-') || t === '-') {
      positionals.push(i);
      continue;
    }
    const base = optionBase(t);
    const plainBase = base.startsWith('no') && !allow.options.has(base) ? base.slice(2) : base;
    if (DENIED_OPTIONS.has(base) || DENIED_OPTIONS.has(plainBase)) {
      throw invalid(`Option ${t} is not allowed: it reads or writes local files or widens what FFmpeg may open`);
    }
    if (!allow.options.has(base) && !allow.options.has(plainBase)) {
      throw invalid(`Option ${t} is not on the template allow-list (TEMPLATE_ALLOWED_OPTIONS adds options)`);
    }
    if (isFlag(base)) continue;
    if (i + 1 >= argv.length) throw invalid(`Option ${t} has no value`);
    const value = argv[i + 1]!;
    i += 1;
    switch (base) {
      case 'i':
        inputs += 1;
        inputIndex = i;
        if (inputs > 1) throw invalid('The template may have only one input (-i)');
        if (value !== opts.inputUrl) {
          throw invalid(`The only input (-i) must be the stream URL ({input_url}), not "${value}"`);
        }
        if (!inputAllowed(value)) {
          throw invalid(`The input "${value}" is not a network URL; local files may not be read`);
        }
        break;
      case 'f':
        if (value === 'lavfi') throw invalid('-f lavfi is not allowed: filter sources can read local files');
        if (inputIndex < 0 && value === 'concat') {
          throw invalid('-f concat is not allowed as input format: its lists can name local files');
        }
        if (inputIndex >= 0) outputFormat = value;
        break;
      case 'hls_segment_filename':
        segmentFilenames.push(value);
        hlsOptions = true;
        break;
      case 'hls_fmp4_init_filename':
      case 'master_pl_name':
        if (value.includes('/') || value.includes('\\')) {
          throw invalid(`-${base} must be a plain file name without a directory`);
        }
        hlsOptions = true;
        break;
      default:
        if (base.startsWith('hls_')) hlsOptions = true;
        if (FILTER_OPTIONS.has(base)) {
          const problem = filterGraphProblem(value, allow);
          if (problem) throw invalid(problem);
        }
        const params = paramsProblem(base, value);
        if (params) throw invalid(`${params}; files may not be named in a template`);
    }
  }

  if (inputs === 0) throw invalid('The template has no input: it needs -i {input_url}');
  if (positionals.length === 0) throw invalid('The template has no output; end it with {output_args}');
  const last = argv.length - 1;
  if (positionals.length > 1 || positionals[0] !== last) {
    const extra = positionals.filter((p) => p !== last).map((p) => `"${argv[p]}"`);
    throw invalid(
      extra.length
        ? `The template may have only one output, the last argument; found also ${extra.join(', ')}`
        : 'The last argument must be the output, not an option value',
    );
  }
  const output = argv[last]!;
  const hls = outputFormat === 'hls' || hlsOptions || /\.m3u8$/i.test(output);

  if (hls) {
    if (!opts.hlsDir) throw invalid('HLS output needs an HLS directory, and none was given');
    const dir = path.resolve(opts.hlsDir);
    if (!path.isAbsolute(output) || !isInside(dir, path.resolve(output))) {
      throw invalid(`HLS output must be a file inside the HLS directory ${dir}, not "${output}"`);
    }
    const outside = segmentFilenames.find((f) => !path.isAbsolute(f) || !isInside(dir, path.resolve(f)));
    if (outside !== undefined) {
      throw invalid(`-hls_segment_filename must be inside the HLS directory ${dir}, not "${outside}"`);
    }
    if (outputFormat !== null && outputFormat !== 'hls') {
      throw invalid(`HLS output needs -f hls, not -f ${outputFormat}`);
    }
    return { outputFormat: 'hls', output };
  }
  if (output !== 'pipe:1') {
    throw invalid(`The output must be pipe:1 (MPEG-TS to the proxy) or an HLS playlist, not "${output}"`);
  }
  if (outputFormat !== 'mpegts') {
    throw invalid(
      outputFormat === null
        ? 'pipe:1 output needs -f mpegts (ffmpeg cannot guess a format for a pipe)'
        : `pipe:1 output must be MPEG-TS (-f mpegts), not -f ${outputFormat}`,
    );
  }
  return { outputFormat: 'mpegts', output };
}
