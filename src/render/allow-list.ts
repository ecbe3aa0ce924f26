// What an FFmpeg template may use: an allow-list of options and filters (anything else is a
// 400 TEMPLATE_INVALID), extendable by the operator (TEMPLATE_ALLOWED_OPTIONS,
// TEMPLATE_ALLOWED_FILTERS), with a hard deny-list the operator cannot lift: options and
// filters that read or write files named in their arguments. A deny-list alone let
// `deshake=filename=<path>` write anywhere (issue 13); an allow-list fails closed.

/**
 * Options by base name (`-c:v` → `c`, `-b:a:0` → `b`). Encoding, scaling, muxing, the HLS
 * muxer (its file names are checked separately), and the input options of the hardware
 * variables ({HW}). None of them opens a file named in its value, except the `*-params`
 * options whose file keys are refused by `paramsProblem`.
 */
export const DEFAULT_OPTIONS: readonly string[] = [
  // global / input
  'hide_banner', 'nostdin', 'y', 'n', 'loglevel', 'v', 'stats', 'nostats', 're', 'fflags', 'flags',
  'analyzeduration', 'probesize', 'thread_queue_size', 'threads', 'filter_threads', 'rw_timeout',
  'timeout', 'reconnect', 'reconnect_streamed', 'reconnect_at_eof', 'reconnect_on_network_error',
  'reconnect_on_http_error', 'reconnect_delay_max', 'seekable', 'multiple_requests', 'err_detect',
  'max_delay', 'fpsprobesize', 'ignore_unknown', 'copyts', 'start_at_zero', 'copytb', 'itsoffset',
  'stream_loop', 'ss', 't', 'to', 'live_start_index', 'http_persistent', 'allowed_extensions',
  'hwaccel', 'hwaccel_device', 'hwaccel_output_format', 'init_hw_device', 'filter_hw_device',
  'extra_hw_frames', 'user_agent', 'headers', 'referer', 'i', 'f',
  // streams and codecs
  'map', 'map_metadata', 'map_chapters', 'c', 'codec', 'vcodec', 'acodec', 'scodec', 'vn', 'an',
  'sn', 'dn', 'b', 'maxrate', 'minrate', 'bufsize', 'crf', 'cq', 'qp', 'q', 'qscale', 'qmin',
  'qmax', 'preset', 'tune', 'profile', 'level', 'g', 'keyint_min', 'sc_threshold', 'bf', 'refs',
  'pix_fmt', 'r', 's', 'aspect', 'vf', 'af', 'filter', 'filter_complex', 'ac', 'ar', 'sample_fmt',
  'channel_layout', 'frames', 'vframes', 'aframes', 'shortest', 'x264opts', 'x264-params',
  'x265-params', 'svtav1-params', 'rc', 'rc-lookahead', 'zerolatency', 'forced-idr',
  'force_key_frames', 'no-scenecut', 'spatial_aq', 'temporal_aq', 'aq-mode', 'aq-strength',
  'b_ref_mode', 'surfaces', 'gpu', 'delay', 'low_power', 'async_depth', 'look_ahead',
  'look_ahead_depth', 'global_quality', 'compression_level', 'quality', 'deadline', 'cpu-used',
  'row-mt', 'tiles', 'vsync', 'fps_mode', 'async', 'top', 'strict', 'bsf', 'vbsf', 'absf',
  'tag', 'vtag', 'atag', 'metadata', 'disposition', 'copyinkf', 'sws_flags', 'avoid_negative_ts',
  'max_muxing_queue_size', 'muxdelay', 'muxpreload', 'max_interleave_delta', 'dts_delta_threshold',
  'xerror', 'fpsmax', 'enc_time_base', 'field_order', 'color_primaries', 'color_trc', 'colorspace',
  'color_range',
  // MPEG-TS muxer
  'mpegts_flags', 'mpegts_copyts', 'mpegts_service_id', 'mpegts_pmt_start_pid', 'mpegts_start_pid',
  'mpegts_transport_stream_id', 'mpegts_original_network_id', 'mpegts_service_type', 'pcr_period',
  'pat_period', 'sdt_period', 'mpegts_m2ts_mode', 'flush_packets', 'movflags',
  // HLS muxer (segment and playlist paths must lie inside the managed HLS directory)
  'hls_time', 'hls_init_time', 'hls_list_size', 'hls_flags', 'hls_segment_filename',
  'hls_playlist_type', 'hls_segment_type', 'hls_start_number_source', 'start_number',
  'hls_allow_cache', 'hls_base_url', 'hls_fmp4_init_filename', 'master_pl_name',
  'hls_delete_threshold', 'var_stream_map', 'hls_enc', 'method',
];

/**
 * Filters that read only the frames given to them: scaling, pixel formats, deinterlacing,
 * hardware upload/download, timing, cropping and padding, simple audio processing.
 */
export const DEFAULT_FILTERS: readonly string[] = [
  'scale', 'scale_cuda', 'scale_npp', 'scale_vaapi', 'scale_qsv', 'vpp_qsv', 'deinterlace_vaapi',
  'deinterlace_qsv', 'yadif', 'yadif_cuda', 'bwdif', 'w3fdif', 'format', 'hwupload',
  'hwupload_cuda', 'hwdownload', 'hwmap', 'fps', 'framerate', 'setsar', 'setdar', 'setpts',
  'asetpts', 'settb', 'asettb', 'setfield', 'fieldorder', 'crop', 'pad', 'transpose', 'hflip',
  'vflip', 'rotate', 'unsharp', 'hqdn3d', 'deblock', 'eq', 'colorspace', 'zscale', 'tonemap',
  'tinterlace', 'interlace', 'idet', 'mpdecimate', 'decimate', 'trim', 'atrim', 'null', 'anull',
  'copy', 'acopy', 'split', 'asplit', 'overlay', 'fade', 'afade', 'aresample', 'aformat',
  'volume', 'loudnorm', 'dynaudnorm', 'acompressor', 'alimiter', 'pan', 'channelmap', 'atempo',
  'highpass', 'lowpass', 'aeval', 'amix', 'drawbox', 'drawtext',
];

/**
 * Never allowed, whatever the operator lists: they read or write a file (or a socket, a
 * model, a script) named in their value, or widen what FFmpeg may open.
 */
export const DENIED_OPTIONS: ReadonlySet<string> = new Set([
  'filter_script', 'filter_complex_script', 'attach', 'dump_attachment', 'vstats', 'vstats_file',
  'pass', 'passlogfile', 'report', 'sdp_file', 'progress', 'fpre', 'vpre', 'apre', 'spre',
  'pre', 'protocol_whitelist', 'protocol_blacklist', 'hls_key_info_file', 'hls_subtitle_path',
  'safe', 'stats_file', 'segment_list', 'ca_file', 'cafile', 'cert_file', 'key_file',
  'tls_verify', 'http_proxy', 'key_info_file', 'listen',
]);

export const DENIED_FILTERS: ReadonlySet<string> = new Set([
  'movie', 'amovie', 'subtitles', 'ass', 'sendcmd', 'asendcmd', 'zmq', 'azmq', 'lut3d', 'lut1d',
  'haldclut', 'frei0r', 'frei0r_src', 'ladspa', 'lv2', 'signature', 'psnr', 'ssim',
  'vidstabdetect', 'vidstabtransform', 'libvmaf', 'vmafmotion', 'metadata', 'ametadata',
  'dnn_processing', 'dnn_detect', 'dnn_classify', 'derain', 'sr', 'ocr', 'cover_rect',
  'find_rect', 'removelogo', 'program_opencl', 'openclsrc', 'arnndn', 'sofalizer', 'lensfun',
  'whisper', 'coreimage', 'coreimagesrc', 'qrencode', 'qrencodesrc',
  'afir', 'headphone', 'spp', 'showspectrumpic', 'libplacebo',
]);

/** Filter option keys that name files, refused in every filter (an operator's too). */
export const DENIED_FILTER_KEYS: ReadonlySet<string> = new Set([
  'filename', 'file', 'fontfile', 'textfile', 'stats_file', 'stats', 'model', 'models', 'log',
  'logfile', 'log_path', 'sofa', 'shader', 'shaders', 'source', 'kernel_file', 'path', 'dir',
  'input', 'output', 'vstats', 'f0', 'plugin', 'lib', 'library', 'sendcmd', 'commands',
]);

/** Keys of `-x264-params`-like values that name files (x264/x265/svt statistics, CSV, dumps). */
const DENIED_PARAM_KEY = /(file|stats|csv|save|load|recon|dump|qpfile|zones?file|scaling-list|rpu|hist|log-?path)/i;
const PARAM_OPTIONS = new Set(['x264opts', 'x264-params', 'x265-params', 'svtav1-params']);

export interface TemplateAllowList {
  readonly options: ReadonlySet<string>;
  readonly filters: ReadonlySet<string>;
  /** Filters the operator added (their positional values are checked for paths too). */
  readonly extraFilters: ReadonlySet<string>;
}

/** `a, b ,c` → ['a', 'b', 'c']; empty parts dropped. */
export function parseNameList(text: string | undefined): string[] {
  return (text ?? '').split(',').map((s) => s.trim()).filter(Boolean);
}

/**
 * The defaults plus the operator's names; a name on a deny-list stays denied (the deny-lists
 * are checked first, so listing `movie` does not enable it).
 */
export function templateAllowList(extraOptions: readonly string[] = [], extraFilters: readonly string[] = []): TemplateAllowList {
  const extra = new Set(extraFilters.map((f) => f.toLowerCase()).filter((f) => !DEFAULT_FILTERS.includes(f)));
  return {
    options: new Set([...DEFAULT_OPTIONS, ...extraOptions.map((o) => o.replace(/^-+/, ''))]),
    filters: new Set([...DEFAULT_FILTERS, ...extra]),
    extraFilters: extra,
  };
}

export const DEFAULT_ALLOW_LIST: TemplateAllowList = templateAllowList();

/** Why the value of a `*-params` option is refused, or null. */
export function paramsProblem(base: string, value: string): string | null {
  if (!PARAM_OPTIONS.has(base)) return null;
  for (const part of value.split(':')) {
    const key = part.split('=')[0]!.trim();
    if (DENIED_PARAM_KEY.test(key)) return `-${base} key "${key}" names a file`;
  }
  // Encoder parameters are numbers and names; a path separator can only be a file name.
  if (/[/\\]/.test(value)) return `-${base} holds a path ("${value}"), which names a file`;
  return null;
}

interface FilterUse {
  name: string;
  /** Option keys (`key=value`) and all values, named and positional. */
  keys: string[];
  values: string[];
}

/**
 * Splits `text` at the unquoted, unescaped characters of `seps`, as FFmpeg's graph and
 * option parsers do (`'...'` quotes, `\x` escapes). `keep`: the parts keep their quotes and
 * escapes (for the next level of parsing); else they are removed.
 */
function splitQuoted(text: string, seps: string, keep = false): string[] {
  const parts: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\\' && i + 1 < text.length) {
      cur += keep ? c + text[++i] : text[++i];
    } else if (!quoted && seps.includes(c)) {
      parts.push(cur);
      cur = '';
    } else {
      if (c === "'") quoted = !quoted;
      if (c !== "'" || keep) cur += c;
    }
  }
  parts.push(cur);
  return parts;
}

function filterUse(part: string): FilterUse | null {
  const m = /^\s*(?:\[[^\]]*\]\s*)*([A-Za-z0-9_]+)(?:@[A-Za-z0-9_]*)?\s*(?:=([\s\S]*?))?\s*(?:\[[^\]]*\]\s*)*$/.exec(part);
  if (!m) return part.trim() ? { name: part.trim().toLowerCase(), keys: [], values: [] } : null;
  const keys: string[] = [];
  const values: string[] = [];
  for (const arg of splitQuoted(m[2] ?? '', ':')) {
    const eq = arg.indexOf('=');
    if (eq >= 0) {
      keys.push(arg.slice(0, eq).trim().toLowerCase());
      values.push(arg.slice(eq + 1));
    } else if (arg) values.push(arg);
  }
  return { name: m[1]!.toLowerCase(), keys, values };
}

/**
 * The filters of a graph with their arguments, two ways: as FFmpeg reads them (quotes
 * honoured), and naively with every quote and backslash dropped first. Checks run on both,
 * so a quoting trick that FFmpeg reads differently from this parser can only lead to a
 * refusal, never past one.
 */
export function parseFilterGraph(graph: string): { exact: FilterUse[]; naive: FilterUse[] } {
  // Level 1: the graph's own quoting separates filters; each filter's arguments keep theirs.
  const exact = splitQuoted(graph, ',;', true).map(filterUse).filter((f): f is FilterUse => f !== null);
  const plain = graph.replace(/['"\\]/g, '');
  const naive = plain.split(/[,;]/).map((p) => {
    const f = filterUse(p);
    if (f) f.keys = [...p.matchAll(/([A-Za-z0-9_]+)\s*=/g)].map((k) => k[1]!.toLowerCase());
    return f;
  }).filter((f): f is FilterUse => f !== null);
  return { exact, naive };
}

// A value that reads like a path: absolute, relative with a dot or tilde, or `x/y` with a
// letter after the slash (`iw/2` and `30000/1001` are arithmetic, not paths).
const PATH_LIKE = /^\s*[/.~]|[/\\][A-Za-z._~]/;

/** Why a filter graph is refused, or null. */
export function filterGraphProblem(graph: string, allow: TemplateAllowList): string | null {
  const { exact, naive } = parseFilterGraph(graph);
  for (const f of [...exact, ...naive]) {
    if (DENIED_FILTERS.has(f.name)) return `Filter "${f.name}" is not allowed: it opens files named in its arguments`;
    const key = f.keys.find((k) => DENIED_FILTER_KEYS.has(k) || (k === 'f' && f.name !== 'aformat'));
    if (key) return `Filter option ${f.name} ${key}= is not allowed: it names a file`;
  }
  for (const f of exact) {
    if (!allow.filters.has(f.name)) {
      return `Filter "${f.name}" is not on the template allow-list (TEMPLATE_ALLOWED_FILTERS adds filters)`;
    }
    if (allow.extraFilters.has(f.name)) {
      const path = f.values.find((v) => PATH_LIKE.test(v));
      if (path !== undefined) return `Filter "${f.name}" has a value that looks like a file path ("${path}")`;
    }
  }
  return null;
}
