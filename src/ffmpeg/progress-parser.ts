// Parses ffmpeg's stderr: the `-stats` line (rewritten in place with `\r`), the `-progress pipe:2`
// key=value blocks, and everything else as plain lines; plus a line classifier for error causes.
import { StringDecoder } from 'node:string_decoder';

export interface FfmpegProgress {
  frame: number | null;
  fps: number | null;
  speed: number | null;
  bitrateKbps: number | null;
  outTimeMs: number | null;
  droppedFrames: number | null;
  duplicatedFrames: number | null;
  sizeKb: number | null;
}

export interface ParsedStderr {
  /** The latest progress seen in this chunk (fields merged, later lines win), or null. */
  progress: Partial<FfmpegProgress> | null;
  /** Other complete lines, trimmed, non-empty. */
  lines: string[];
}

export function emptyProgress(): FfmpegProgress {
  return {
    frame: null,
    fps: null,
    speed: null,
    bitrateKbps: null,
    outTimeMs: null,
    droppedFrames: null,
    duplicatedFrames: null,
    sizeKb: null,
  };
}

/** A partial line longer than this is truncated (the rest dropped up to the next line end). */
export const MAX_PENDING_LINE = 64 * 1024;

const NA = /^(N\/A|nan|inf|-inf)$/i;

function num(v: string | undefined): number | null {
  if (v === undefined || NA.test(v)) return null;
  const n = Number.parseFloat(v);
  return Number.isFinite(n) ? n : null;
}

function int(v: string | undefined): number | null {
  const n = num(v);
  return n === null ? null : Math.trunc(n);
}

// `00:00:04.92`, `-00:00:00.02`, `123:04:05.000000` → milliseconds (negative kept: it is real
// information about timestamps before the output start).
export function parseClock(v: string | undefined): number | null {
  if (v === undefined) return null;
  const m = /^(-)?(\d+):(\d{1,2}):(\d{1,2}(?:\.\d+)?)$/.exec(v);
  if (!m) return null;
  const ms = Math.round((Number(m[2]) * 3600 + Number(m[3]) * 60 + Number(m[4])) * 1000);
  return m[1] ? -ms : ms;
}

// `1024kB` (ffmpeg's kB is 1024 bytes), `24KiB` (ffmpeg ≥ 6.1), `3MiB`, `512B`.
function parseSizeKb(v: string | undefined): number | null {
  if (v === undefined) return null;
  const m = /^(-?\d+(?:\.\d+)?)\s*(B|kB|KiB|KB|MB|MiB|GB|GiB)?$/.exec(v);
  if (!m) return null;
  const n = Number(m[1]);
  switch (m[2]) {
    case 'B':
      return n / 1024;
    case 'MB':
    case 'MiB':
      return n * 1024;
    case 'GB':
    case 'GiB':
      return n * 1024 * 1024;
    default:
      return n;
  }
}

// `1703.2kbits/s`; ffmpeg prints kbits/s, other prefixes are accepted anyway.
function parseBitrateKbps(v: string | undefined): number | null {
  if (v === undefined) return null;
  const m = /^(\d+(?:\.\d+)?)\s*([kMG]?)bits\/s$/.exec(v);
  if (!m) return null;
  const n = Number(m[1]);
  const scale: Record<string, number> = { '': 1 / 1000, k: 1, M: 1000, G: 1_000_000 };
  return n * (scale[m[2] ?? ''] ?? 1);
}

function parseSpeed(v: string | undefined): number | null {
  if (v === undefined) return null;
  const m = /^(\d+(?:\.\d+)?(?:e[+-]?\d+)?)x$/.exec(v);
  return m ? Number(m[1]) : null;
}

const STATS_TOKEN = /([A-Za-z_]+)=\s*(\S+)/g;

/**
 * The `-stats` line: `frame=  123 fps= 25 q=28.0 size=    1024kB time=00:00:04.92 bitrate=...
 * dup=0 drop=0 speed=1.01x` (audio-only outputs start at `size=`; the final one says `Lsize=`).
 * Returns null for anything else.
 */
export function parseStatsLine(line: string): Partial<FfmpegProgress> | null {
  if (!/^(frame|size|Lsize)=/.test(line) || !/\stime=/.test(line)) return null;
  const kv = new Map<string, string>();
  for (const m of line.matchAll(STATS_TOKEN)) {
    const key = m[1] as string;
    if (!kv.has(key)) kv.set(key, m[2] as string);
  }
  if (kv.size < 2) return null;
  const p: Partial<FfmpegProgress> = {};
  if (kv.has('frame')) {
    p.frame = int(kv.get('frame'));
    // ffmpeg prints `dup= drop=` only when one of them is non-zero.
    p.duplicatedFrames = kv.has('dup') ? int(kv.get('dup')) : 0;
    p.droppedFrames = kv.has('drop') ? int(kv.get('drop')) : 0;
  }
  if (kv.has('fps')) p.fps = num(kv.get('fps'));
  if (kv.has('size') || kv.has('Lsize')) p.sizeKb = parseSizeKb(kv.get('size') ?? kv.get('Lsize'));
  if (kv.has('time')) p.outTimeMs = parseClock(kv.get('time'));
  if (kv.has('bitrate')) p.bitrateKbps = parseBitrateKbps(kv.get('bitrate'));
  if (kv.has('speed')) p.speed = parseSpeed(kv.get('speed'));
  return p;
}

// `-progress` keys; `out_time_ms` is in microseconds too (a long-standing ffmpeg quirk).
const PROGRESS_KEYS = new Set([
  'frame',
  'fps',
  'bitrate',
  'total_size',
  'out_time_us',
  'out_time_ms',
  'out_time',
  'dup_frames',
  'drop_frames',
  'speed',
  'progress',
]);
const PROGRESS_KV = /^([a-z0-9_]+)=\s*(.*)$/;

function applyProgressKey(p: Partial<FfmpegProgress>, key: string, value: string): void {
  switch (key) {
    case 'frame':
      p.frame = int(value);
      break;
    case 'fps':
      p.fps = num(value);
      break;
    case 'bitrate':
      p.bitrateKbps = parseBitrateKbps(value);
      break;
    case 'total_size': {
      const bytes = num(value);
      p.sizeKb = bytes === null ? null : bytes / 1024;
      break;
    }
    case 'out_time_us':
    case 'out_time_ms': {
      const us = num(value);
      p.outTimeMs = us === null ? null : Math.round(us / 1000);
      break;
    }
    case 'out_time':
      if (p.outTimeMs === undefined) p.outTimeMs = parseClock(value);
      break;
    case 'dup_frames':
      p.duplicatedFrames = int(value);
      break;
    case 'drop_frames':
      p.droppedFrames = int(value);
      break;
    case 'speed':
      p.speed = parseSpeed(value);
      break;
  }
}

function merge(into: ParsedStderr, p: Partial<FfmpegProgress>): void {
  into.progress = into.progress ? Object.assign(into.progress, p) : { ...p };
}

/**
 * Splits stderr chunks on `\r` and `\n` across arbitrary chunk boundaries. Memory is bounded: a
 * pending partial line is capped at MAX_PENDING_LINE characters, the excess dropped.
 */
export class StderrParser {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  private droppedChars = 0;
  // The `-progress` block being collected; emitted on its `progress=` line. Bounded by the key set.
  private block: Partial<FfmpegProgress> | null = null;

  push(chunk: Buffer): ParsedStderr {
    return this.feed(this.decoder.write(chunk), false);
  }

  /** Flushes a last line that had no terminator (call when stderr ends). */
  end(): ParsedStderr {
    return this.feed(this.decoder.end(), true);
  }

  private feed(text: string, final: boolean): ParsedStderr {
    const out: ParsedStderr = { progress: null, lines: [] };
    const parts = text.split(/[\r\n]/);
    // Every part but the last ended with a terminator.
    for (let i = 0; i < parts.length - 1; i++) {
      this.append(parts[i] as string);
      this.finishLine(out);
    }
    this.append(parts[parts.length - 1] as string);
    if (final) this.finishLine(out);
    return out;
  }

  private append(s: string): void {
    if (s.length === 0) return;
    const room = MAX_PENDING_LINE - this.pending.length;
    if (s.length <= room) {
      this.pending += s;
    } else {
      if (room > 0) this.pending += s.slice(0, room);
      this.droppedChars += s.length - Math.max(room, 0);
    }
  }

  private finishLine(out: ParsedStderr): void {
    let line = this.pending.trim();
    if (this.droppedChars > 0) line += ` [truncated ${this.droppedChars} chars]`;
    this.pending = '';
    this.droppedChars = 0;
    if (line.length === 0) return;

    const stats = parseStatsLine(line);
    if (stats) {
      merge(out, stats);
      return;
    }
    const kv = PROGRESS_KV.exec(line);
    const key = kv?.[1];
    if (kv && key !== undefined && (PROGRESS_KEYS.has(key) || /^stream_\d+_\d+_q$/.test(key))) {
      this.block ??= {};
      if (key === 'progress') {
        merge(out, this.block);
        this.block = null;
      } else {
        applyProgressKey(this.block, key, (kv[2] ?? '').trim());
      }
      return;
    }
    out.lines.push(line);
  }
}

export type FfmpegErrorClass = 'input' | 'output' | 'other';

// Order matters: output-side phrases are checked first because some of them end in an errno text
// that also appears for inputs (`Error writing trailer of pipe:1: Input/output error`).
const OUTPUT_PATTERNS: RegExp[] = [
  /Error while opening encoder/i,
  /Unknown encoder/i,
  /Encoder .*not found/i,
  /Error initializing output stream/i,
  /Error opening output/i,
  /Could not write header/i,
  /Error writing trailer/i,
  /Error closing file/i,
  /av_interleaved_write_frame\(\)/,
  /Broken pipe/i,
  /Error muxing/i,
  /Unable to find a suitable output format/i,
  /is not a suitable output format/i,
  /Could not find tag for codec/i,
  /not currently supported in container/i,
  /Output file #?\d* ?does not contain any stream/i,
  /Unrecognized option/i,
  /Option not found/i,
  /Error splitting the argument list/i,
  /Error parsing options/i,
  /Error applying option/i,
  /Invalid encoder type/i,
  /matches no streams/i,
  // Summary printed after a failed transcode; FfmpegProcess does not let it replace a cause already
  // classified (with `-loglevel error` it is not even printed: ffmpeg logs it at info).
  /^Conversion failed!?$/i,
];

const INPUT_PATTERNS: RegExp[] = [
  /Connection refused/i,
  /Connection timed out/i,
  /Operation timed out/i,
  /Connection reset by peer/i,
  /Network is unreachable/i,
  /No route to host/i,
  /Failed to resolve hostname/i,
  /Name or service not known/i,
  /Server returned \d{3}|Server returned [45]XX/i,
  /HTTP error \d{3}/i,
  /Invalid data found when processing input/i,
  /Error opening input/i,
  // ffmpeg 5.1 prints `<path>: No such file or directory` for a missing output directory too;
  // our outputs are pipes, so the path is taken to be the input.
  /No such file or directory/i,
  /End of file/i,
  /Input\/output error/i,
  /Stream ends prematurely/i,
  /Protocol not found/i,
  /Permission denied/i,
];

// `Invalid argument` alone is ambiguous; it is the output's when the line names an output/option.
const OUTPUT_CONTEXT = /\b(pipe:1|output|encoder|muxer|option|codec)\b/i;

/**
 * Classifies one stderr line: 'input' (source unreachable or unreadable), 'output' (encoder,
 * muxer, output pipe or our own arguments), 'other' (any other line that says error/failed), or
 * null for ordinary lines. Stateless: context across lines is FfmpegProcess's job.
 */
export function classifyLine(line: string): FfmpegErrorClass | null {
  if (OUTPUT_PATTERNS.some((re) => re.test(line))) return 'output';
  if (/Invalid argument/i.test(line) && OUTPUT_CONTEXT.test(line)) return 'output';
  if (INPUT_PATTERNS.some((re) => re.test(line))) return 'input';
  if (/\berror\b|\bfailed\b/i.test(line)) return 'other';
  return null;
}
