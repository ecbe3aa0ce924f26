// Hardware acceleration: which encoder family this host can use, turned into the template
// variables the profiles are written against ({HW}, {ENC264}, ...). Decoding on the GPU never
// keeps frames there (no -hwaccel_output_format), so software filters stay valid everywhere;
// only encoders that need GPU frames (vaapi, qsv) get an upload at the END of the filter chain.
import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import path from 'node:path';
import { quoteArg, tokenize } from '../render/template.js';

export type HwType = 'cpu' | 'nvenc' | 'vaapi' | 'qsv';
export type HwMode = 'auto' | HwType;

export interface HwVariables {
  type: HwType;
  /** The device node used, or null for cpu. */
  device: string | null;
  /** Input options placed before `-i` ('' for cpu). Never sets -hwaccel_output_format. */
  HW: string;
  ENC264: string;
  ENC265: string;
  /** Bare preset name ('' where the encoder has none, i.e. vaapi). */
  PRESET: string;
  /** `-preset <PRESET>` or '' (vaapi has no -preset); what templates should use. */
  PRESET_ARGS: string;
  /**
   * Filter-chain SUFFIX that moves frames to the GPU for encoders that need GPU frames:
   * `,format=nv12,hwupload` for vaapi, '' otherwise. It goes after the software filters
   * (`-vf "scale=-2:720{HWUPLOAD}"`), since software filters cannot read GPU frames.
   */
  HWUPLOAD: string;
  /** Encoder-specific low-latency tuning (`-tune zerolatency` is libx264-only). */
  LOWLATENCY_ARGS: string;
  /** Set when a requested mode was not available and cpu was used instead. */
  fallbackReason?: string;
}

export interface DetectOptions {
  ffmpegPath: string;
  mode: HwMode;
  /** Where device nodes live; tests point it at a temp dir. */
  devDir?: string;
  /**
   * Run a tiny test encode before choosing a GPU encoder (default true): Debian's ffmpeg lists
   * h264_nvenc even without a driver, and a device node alone does not prove the libraries.
   */
  probe?: boolean;
}

export const CPU_VARIABLES: HwVariables = Object.freeze({
  type: 'cpu',
  device: null,
  HW: '',
  ENC264: 'libx264',
  ENC265: 'libx265',
  PRESET: 'veryfast',
  PRESET_ARGS: '-preset veryfast',
  HWUPLOAD: '',
  LOWLATENCY_ARGS: '-tune zerolatency',
}) as HwVariables;

function variablesFor(type: Exclude<HwType, 'cpu'>, device: string): HwVariables {
  const dev = quoteArg(device);
  switch (type) {
    case 'nvenc':
      // NVENC takes frames from system memory, so no upload is needed.
      return {
        type, device, HW: '-hwaccel cuda', ENC264: 'h264_nvenc', ENC265: 'hevc_nvenc',
        PRESET: 'p4', PRESET_ARGS: '-preset p4', HWUPLOAD: '', LOWLATENCY_ARGS: '-tune ll -zerolatency 1',
      };
    case 'vaapi':
      // A named device serves the decoder and the hwupload filter alike.
      return {
        type, device,
        HW: `-init_hw_device vaapi=va:${dev} -hwaccel vaapi -hwaccel_device va -filter_hw_device va`,
        ENC264: 'h264_vaapi', ENC265: 'hevc_vaapi', PRESET: '', PRESET_ARGS: '',
        HWUPLOAD: ',format=nv12,hwupload', LOWLATENCY_ARGS: '',
      };
    case 'qsv':
      // ffmpeg 5.x's -hwaccel qsv only works with the *_qsv decoders; decode in software and
      // upload to a QSV device for the encoder instead.
      return {
        type, device,
        HW: `-init_hw_device vaapi=va:${dev} -init_hw_device qsv=qs@va -filter_hw_device qs`,
        ENC264: 'h264_qsv', ENC265: 'hevc_qsv', PRESET: 'veryfast', PRESET_ARGS: '-preset veryfast',
        HWUPLOAD: ',format=nv12,hwupload=extra_hw_frames=64', LOWLATENCY_ARGS: '',
      };
  }
}

/** The variables a template sees (everything but type/device/fallbackReason). */
export function hwTemplateVariables(hw: HwVariables): Record<string, string> {
  return {
    HW: hw.HW,
    ENC264: hw.ENC264,
    ENC265: hw.ENC265,
    PRESET: hw.PRESET,
    PRESET_ARGS: hw.PRESET_ARGS,
    HWUPLOAD: hw.HWUPLOAD,
    LOWLATENCY_ARGS: hw.LOWLATENCY_ARGS,
  };
}

/** The hardware input options as argv (for /info). */
export function ffmpegArgsFor(hw: HwVariables): string[] {
  return tokenize(hw.HW);
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<{ ok: boolean; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (error, stdout, stderr) => {
      resolve({ ok: !error, out: String(stdout), err: String(stderr) || (error ? error.message : '') });
    });
  });
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

const ENCODER_OF: Record<Exclude<HwType, 'cpu'>, string> = {
  nvenc: 'h264_nvenc',
  vaapi: 'h264_vaapi',
  qsv: 'h264_qsv',
};

// Encode 0.2 s of black with exactly the variables a profile would get.
function probeArgs(hw: HwVariables): string[] {
  const vf = hw.HWUPLOAD ? ['-vf', `format=yuv420p${hw.HWUPLOAD}`] : [];
  return [
    '-hide_banner', '-loglevel', 'error', '-nostdin',
    ...tokenize(hw.HW.replace(/-hwaccel\s+\S+(\s+-hwaccel_device\s+\S+)?/, '')), // lavfi input has nothing to decode
    '-f', 'lavfi', '-i', 'color=c=black:s=256x144:r=10:d=0.2',
    ...vf, '-c:v', hw.ENC264, ...tokenize(hw.PRESET_ARGS), '-f', 'null', '-',
  ];
}

/**
 * Pick the acceleration: `auto` tries nvenc, vaapi, qsv, else cpu; an explicit mode that is
 * not usable falls back to cpu and says why in `fallbackReason`.
 */
export async function detectHwAccel(opts: DetectOptions): Promise<HwVariables> {
  const { ffmpegPath, mode } = opts;
  const devDir = opts.devDir ?? '/dev';
  const probe = opts.probe ?? true;
  if (mode === 'cpu') return { ...CPU_VARIABLES };

  const listed = await run(ffmpegPath, ['-hide_banner', '-encoders'], 10_000);
  const encoders = new Set<string>();
  for (const line of listed.out.split('\n')) {
    const m = /^\s*[VAS][A-Z.]{5}\s+(\S+)/.exec(line);
    if (m) encoders.add(m[1]!);
  }

  const devices: Record<Exclude<HwType, 'cpu'>, string> = {
    nvenc: path.join(devDir, 'nvidia0'),
    vaapi: path.join(devDir, 'dri', 'renderD128'),
    qsv: path.join(devDir, 'dri', 'renderD128'),
  };

  const reasons: string[] = [];
  const candidates: Array<Exclude<HwType, 'cpu'>> = mode === 'auto' ? ['nvenc', 'vaapi', 'qsv'] : [mode];
  for (const type of candidates) {
    const encoder = ENCODER_OF[type];
    if (!listed.ok) {
      reasons.push(`${ffmpegPath} -encoders failed (${listed.err.trim().split('\n')[0] ?? 'no output'})`);
      break;
    }
    if (!encoders.has(encoder)) {
      reasons.push(`${type}: ffmpeg has no ${encoder} encoder`);
      continue;
    }
    if (!(await exists(devices[type]))) {
      reasons.push(`${type}: device ${devices[type]} not found`);
      continue;
    }
    const vars = variablesFor(type, devices[type]);
    if (probe) {
      const test = await run(ffmpegPath, probeArgs(vars), 10_000);
      if (!test.ok) {
        const why = test.err.trim().split('\n').filter(Boolean).slice(0, 2).join(' / ') || 'unknown error';
        reasons.push(`${type}: test encode with ${encoder} failed (${why})`);
        continue;
      }
    }
    return vars;
  }
  // auto finding nothing is the normal CPU case, not a fallback.
  return mode === 'auto'
    ? { ...CPU_VARIABLES }
    : { ...CPU_VARIABLES, fallbackReason: `${mode} requested but not available, using cpu: ${reasons.join('; ')}` };
}
