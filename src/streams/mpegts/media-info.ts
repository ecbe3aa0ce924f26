// What a stream carries, in upstream m3u-proxy 0.4.x's `media_info` shape (API.md §9), read
// from the MPEG-TS itself: codecs from the PMT's stream types (ISO/IEC 13818-1 Table 2-34,
// plus the DVB descriptors that name AC-3/E-AC-3/DTS in private-data streams), the picture
// size from the H.264 SPS, audio channels from the first AAC ADTS header. The TS inspector
// calls these only when the PMT changes or while a field is still unknown, so nothing here
// runs per packet once the stream is known.

/** `{}` when nothing is known; fields appear as they become known. */
export interface MediaInfo {
  container?: string;
  video_codec?: string;
  resolution?: string;
  audio_codec?: string;
  audio_channels?: number;
  fps?: number;
  bitrate_kbps?: number;
}

/** The output side of a transcode adds FFmpeg's frame count and speed. */
export interface OutputMediaInfo extends MediaInfo {
  frame?: number;
  speed?: number;
}

/** One elementary stream of the PMT. */
export interface EsInfo {
  pid: number;
  type: number;
  codec: string | null;
  kind: 'video' | 'audio' | 'other';
}

/** What the inspector has learned of the programme. */
export interface ProgramInfo {
  streams: EsInfo[];
  width: number | null;
  height: number | null;
  audioChannels: number | null;
}

const VIDEO: Record<number, string> = {
  0x01: 'mpeg1video', 0x02: 'mpeg2video', 0x10: 'mpeg4', 0x1b: 'h264', 0x24: 'hevc', 0x42: 'cavs', 0xd1: 'dirac', 0xea: 'vc1',
};
const AUDIO: Record<number, string> = {
  0x03: 'mp2', 0x04: 'mp2', 0x0f: 'aac', 0x11: 'aac_latm', 0x81: 'ac3', 0x82: 'dts', 0x87: 'eac3',
};
// DVB descriptor tags (EN 300 468) that name the codec of a stream_type 0x06 stream.
const DESCRIPTOR_AUDIO: Record<number, string> = { 0x6a: 'ac3', 0x7a: 'eac3', 0x7b: 'dts', 0x7c: 'aac' };

/** The elementary stream of a PMT entry; `descriptors` is its ES_info bytes. */
export function esInfo(pid: number, type: number, descriptors: Buffer): EsInfo {
  if (VIDEO[type]) return { pid, type, codec: VIDEO[type]!, kind: 'video' };
  if (AUDIO[type]) return { pid, type, codec: AUDIO[type]!, kind: 'audio' };
  if (type === 0x06) {
    for (let p = 0; p + 2 <= descriptors.length; p += 2 + descriptors[p + 1]!) {
      const codec = DESCRIPTOR_AUDIO[descriptors[p]!];
      if (codec) return { pid, type, codec, kind: 'audio' };
    }
  }
  return { pid, type, codec: null, kind: 'other' };
}

/** Reads Exp-Golomb coded fields (H.264 §9.1) from an RBSP. */
class BitReader {
  private bit = 0;
  constructor(private readonly data: Buffer) {}

  u(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) {
      const byte = this.data[this.bit >> 3];
      if (byte === undefined) throw new RangeError('SPS ends early');
      v = (v << 1) | ((byte >> (7 - (this.bit & 7))) & 1);
      this.bit++;
    }
    return v >>> 0;
  }

  ue(): number {
    let zeros = 0;
    while (this.u(1) === 0) if (++zeros > 31) throw new RangeError('bad Exp-Golomb code');
    return zeros === 0 ? 0 : (2 ** zeros - 1 + this.u(zeros));
  }

  se(): number {
    const k = this.ue();
    return k & 1 ? (k + 1) / 2 : -k / 2;
  }
}

/** The RBSP of a NAL unit payload: emulation prevention bytes (00 00 03) removed. */
function rbsp(nal: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < nal.length; i++) {
    if (i >= 2 && nal[i] === 3 && nal[i - 1] === 0 && nal[i - 2] === 0) continue;
    out.push(nal[i]!);
  }
  return Buffer.from(out);
}

const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

function skipScalingList(r: BitReader, size: number): void {
  let last = 8;
  let next = 8;
  for (let j = 0; j < size; j++) {
    if (next !== 0) next = (last + r.se() + 256) % 256;
    last = next === 0 ? last : next;
  }
}

/**
 * Width and height of an H.264 sequence parameter set (ITU-T H.264 §7.3.2.1.1), cropping
 * applied; `sps` starts after the NAL header byte. null when it cannot be read.
 */
export function h264SpsSize(sps: Buffer): { width: number; height: number } | null {
  try {
    const r = new BitReader(rbsp(sps));
    const profile = r.u(8);
    r.u(16); // constraint flags, level
    r.ue(); // seq_parameter_set_id
    let chromaFormat = 1;
    if (HIGH_PROFILES.has(profile)) {
      chromaFormat = r.ue();
      if (chromaFormat === 3) r.u(1);
      r.ue();
      r.ue();
      r.u(1);
      if (r.u(1)) for (let i = 0; i < (chromaFormat === 3 ? 12 : 8); i++) if (r.u(1)) skipScalingList(r, i < 6 ? 16 : 64);
    }
    r.ue(); // log2_max_frame_num_minus4
    const pocType = r.ue();
    if (pocType === 0) r.ue();
    else if (pocType === 1) {
      r.u(1);
      r.se();
      r.se();
      const n = r.ue();
      for (let i = 0; i < n; i++) r.se();
    }
    r.ue(); // max_num_ref_frames
    r.u(1);
    const widthMbs = r.ue() + 1;
    const heightUnits = r.ue() + 1;
    const frameMbsOnly = r.u(1);
    if (!frameMbsOnly) r.u(1);
    r.u(1);
    let [cl, cr, ct, cb] = [0, 0, 0, 0];
    if (r.u(1)) [cl, cr, ct, cb] = [r.ue(), r.ue(), r.ue(), r.ue()];
    const subW = chromaFormat === 1 || chromaFormat === 2 ? 2 : 1;
    const subH = chromaFormat === 1 ? 2 : 1;
    const cropX = chromaFormat === 0 ? 1 : subW;
    const cropY = (chromaFormat === 0 ? 1 : subH) * (2 - frameMbsOnly);
    const width = widthMbs * 16 - cropX * (cl + cr);
    const height = (2 - frameMbsOnly) * heightUnits * 16 - cropY * (ct + cb);
    return width > 0 && height > 0 ? { width, height } : null;
  } catch {
    return null;
  }
}

/** The SPS (NAL type 7) in an H.264 Annex B byte run, or null. */
export function findH264Sps(data: Buffer): Buffer | null {
  for (let i = 0; i + 4 < data.length; i++) {
    if (data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 1 && (data[i + 3]! & 0x1f) === 7) {
      let end = data.length; // up to the next start code, or what this run holds
      for (let j = i + 4; j + 2 < data.length; j++) {
        if (data[j] === 0 && data[j + 1] === 0 && (data[j + 2] === 1 || data[j + 2] === 0)) {
          end = j;
          break;
        }
      }
      return data.subarray(i + 4, end);
    }
  }
  return null;
}

/** Channels of the first AAC ADTS header (ISO/IEC 14496-3 §1.A.2) in a byte run, or null. */
export function adtsChannels(data: Buffer): number | null {
  for (let i = 0; i + 7 <= data.length; i++) {
    if (data[i] === 0xff && (data[i + 1]! & 0xf6) === 0xf0) {
      const config = ((data[i + 2]! & 0x01) << 2) | (data[i + 3]! >> 6);
      return config === 7 ? 8 : config || null; // 0: defined in the stream (not read here)
    }
  }
  return null;
}

/** `media_info` from what the inspector knows and the measured byte rate. */
export function mediaInfoOf(program: ProgramInfo | null, bitrateKbps: number | null): MediaInfo {
  if (!program || program.streams.length === 0) return {};
  const video = program.streams.find((s) => s.kind === 'video');
  const audio = program.streams.find((s) => s.kind === 'audio');
  const info: MediaInfo = { container: 'mpegts' };
  if (video?.codec) info.video_codec = video.codec;
  if (program.width && program.height) info.resolution = `${program.width}x${program.height}`;
  if (audio?.codec) info.audio_codec = audio.codec;
  if (program.audioChannels) info.audio_channels = program.audioChannels;
  if (bitrateKbps !== null && bitrateKbps > 0) info.bitrate_kbps = Math.round(bitrateKbps);
  return info;
}
