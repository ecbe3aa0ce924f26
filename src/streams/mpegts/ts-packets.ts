// Just enough MPEG-TS to cut a byte stream at packet boundaries and find join points:
// PAT (pid 0), the PMT pids it names, video pids from the PMT, and keyframes (random access
// indicator, or an H.264/H.265 IDR/IRAP NAL at the start of a video PES).
// Done once per channel, never per viewer.

import { adtsChannels, esInfo, findH264Sps, h264SpsSize, type EsInfo, type ProgramInfo } from './media-info.js';

export const TS_PACKET_SIZE = 188;
export const TS_SYNC_BYTE = 0x47;
const NULL_PID = 0x1fff;

const VIDEO_STREAM_TYPES = new Set([0x01, 0x02, 0x10, 0x1b, 0x24, 0x42, 0xd1, 0xea]);
const H264 = 0x1b;
const H265 = 0x24;

/** One null packet (pid 0x1fff): players accept it and it keeps an idle connection alive. */
export const NULL_PACKET: Buffer = (() => {
  const b = Buffer.alloc(TS_PACKET_SIZE, 0xff);
  b[0] = TS_SYNC_BYTE;
  b[1] = 0x1f;
  b[2] = 0xff;
  b[3] = 0x10;
  return b;
})();

export const packetPid = (buf: Buffer, off: number): number =>
  ((buf[off + 1]! & 0x1f) << 8) | buf[off + 2]!;

/**
 * The 33-bit PCR base (90 kHz units) of the packet at `off`, whose adaptation field carries a
 * PCR (ISO/IEC 13818-1 §2.4.3.5: program_clock_reference_base, bytes 6–10 of the packet).
 */
const pcrBase = (buf: Buffer, off: number): number =>
  buf[off + 6]! * 2 ** 25 + buf[off + 7]! * 2 ** 17 + buf[off + 8]! * 2 ** 9 + buf[off + 9]! * 2 + (buf[off + 10]! >> 7);

const payloadStart = (buf: Buffer, off: number): boolean => (buf[off + 1]! & 0x40) !== 0;

/** Offset of the payload inside the packet, or -1 when it has none. */
function payloadOffset(buf: Buffer, off: number): number {
  const afc = (buf[off + 3]! >> 4) & 0x3;
  if (afc === 0 || afc === 2) return -1;
  if (afc === 1) return off + 4;
  const p = off + 5 + buf[off + 4]!;
  return p < off + TS_PACKET_SIZE ? p : -1;
}

export interface PacketMarks {
  /** Index (in packets) of every PAT packet. */
  pats: number[];
  /** Index (in packets) of every packet that starts a video keyframe. */
  keyframes: number[];
}

/**
 * Tracks the programme tables of one stream so keyframes can be told apart from audio
 * random-access points.
 */
export class TsInspector {
  private readonly pmtPids = new Set<number>();
  private readonly videoPids = new Map<number, number>(); // pid -> stream type
  /** The last PMT section read (bytes in its packet): the PMT is parsed again only when it changes. */
  private lastPmt: Buffer | null = null;
  /** Codecs, picture size and audio channels learned from the PMT and the streams (media_info). */
  program: ProgramInfo | null = null;
  private sizePid = -1;
  private aacPid = -1;
  /** The last continuity counter seen per PID; -1 before the first packet. */
  private readonly lastCc = new Int8Array(8192).fill(-1);
  /**
   * Continuity-counter errors (ISO/IEC 13818-1 §2.4.3.3): a payload packet whose counter is
   * not the previous one + 1 on its PID, i.e. packets lost upstream. Not errors: a repeated
   * counter (a duplicate packet), a packet flagged with discontinuity_indicator, packets
   * without payload (their counter does not advance), null packets, packets marked corrupt.
   */
  ccErrors = 0;
  /** The PID whose PCR is followed (the first that carried one); -1 before. */
  private pcrPid = -1;
  /** The newest PCR base read (90 kHz units); -1 before any. */
  lastPcr = -1;

  /** Inspects `count` aligned packets starting at `start`. */
  inspect(buf: Buffer, start: number, count: number): PacketMarks {
    const marks: PacketMarks = { pats: [], keyframes: [] };
    for (let i = 0; i < count; i++) {
      const off = start + i * TS_PACKET_SIZE;
      const pid = packetPid(buf, off);
      this.checkContinuity(buf, off, pid);
      // An adaptation field of 7+ bytes with PCR_flag: the programme clock.
      if ((buf[off + 3]! & 0x20) !== 0 && buf[off + 4]! >= 7 && (buf[off + 5]! & 0x10) !== 0) {
        if (this.pcrPid < 0) this.pcrPid = pid;
        if (pid === this.pcrPid) this.lastPcr = pcrBase(buf, off);
      }
      if (pid === 0) {
        if (payloadStart(buf, off)) {
          marks.pats.push(i);
          this.readPat(buf, off);
        }
      } else if (this.pmtPids.has(pid)) {
        if (payloadStart(buf, off)) this.readPmt(buf, off);
      } else if (payloadStart(buf, off)) {
        const type = this.videoPids.get(pid);
        if (type !== undefined && this.isKeyframe(buf, off, type)) marks.keyframes.push(i);
        // Until known (once per PMT change): the SPS's picture size, the ADTS channel count.
        if (pid === this.sizePid || pid === this.aacPid) this.learn(buf, off, pid);
      }
    }
    return marks;
  }

  private checkContinuity(buf: Buffer, off: number, pid: number): void {
    const flags = buf[off + 3]!;
    // No payload (adaptation field only), a null packet, or transport_error_indicator set.
    if ((flags & 0x10) === 0 || pid === NULL_PID || (buf[off + 1]! & 0x80) !== 0) return;
    const cc = flags & 0x0f;
    const last = this.lastCc[pid]!;
    this.lastCc[pid] = cc;
    if (last < 0 || cc === last || ((last + 1) & 0x0f) === cc) return;
    const discontinuity = (flags & 0x20) !== 0 && buf[off + 4]! > 0 && (buf[off + 5]! & 0x80) !== 0;
    if (!discontinuity) this.ccErrors++;
  }

  private section(buf: Buffer, off: number): { at: number; end: number } | null {
    const p = payloadOffset(buf, off);
    if (p < 0) return null;
    const at = p + 1 + buf[p]!; // pointer_field
    if (at + 3 > off + TS_PACKET_SIZE) return null;
    const length = ((buf[at + 1]! & 0x0f) << 8) | buf[at + 2]!;
    // Tables that span packets are rare for PAT/PMT; read what this packet holds.
    const end = Math.min(at + 3 + length - 4, off + TS_PACKET_SIZE);
    return { at, end };
  }

  private readPat(buf: Buffer, off: number): void {
    const s = this.section(buf, off);
    if (!s || buf[s.at] !== 0x00) return;
    for (let p = s.at + 8; p + 4 <= s.end; p += 4) {
      const program = (buf[p]! << 8) | buf[p + 1]!;
      if (program !== 0) this.pmtPids.add(((buf[p + 2]! & 0x1f) << 8) | buf[p + 3]!);
    }
  }

  private readPmt(buf: Buffer, off: number): void {
    const s = this.section(buf, off);
    if (!s || buf[s.at] !== 0x02) return;
    const bytes = buf.subarray(s.at, s.end);
    if (this.lastPmt?.equals(bytes)) return; // sent every ~100 ms, it rarely changes
    this.lastPmt = Buffer.from(bytes);
    const streams: EsInfo[] = [];
    const infoLength = ((buf[s.at + 10]! & 0x0f) << 8) | buf[s.at + 11]!;
    for (let p = s.at + 12 + infoLength; p + 5 <= s.end; ) {
      const type = buf[p]!;
      const pid = ((buf[p + 1]! & 0x1f) << 8) | buf[p + 2]!;
      const esLength = ((buf[p + 3]! & 0x0f) << 8) | buf[p + 4]!;
      if (VIDEO_STREAM_TYPES.has(type)) this.videoPids.set(pid, type);
      streams.push(esInfo(pid, type, buf.subarray(p + 5, Math.min(p + 5 + esLength, s.end))));
      p += 5 + esLength;
    }
    this.program = { streams, width: null, height: null, audioChannels: null };
    this.sizePid = streams.find((e) => e.kind === 'video' && e.type === H264)?.pid ?? -1;
    this.aacPid = streams.find((e) => e.kind === 'audio' && e.type === 0x0f)?.pid ?? -1;
  }

  private learn(buf: Buffer, off: number, pid: number): void {
    const p = payloadOffset(buf, off);
    if (p < 0 || !this.program) return;
    const data = buf.subarray(p, off + TS_PACKET_SIZE);
    if (pid === this.sizePid) {
      const sps = findH264Sps(data);
      const size = sps ? h264SpsSize(sps) : null;
      if (size) {
        this.program.width = size.width;
        this.program.height = size.height;
        this.sizePid = -1;
      }
    } else {
      const channels = adtsChannels(data);
      if (channels) {
        this.program.audioChannels = channels;
        this.aacPid = -1;
      }
    }
  }

  private isKeyframe(buf: Buffer, off: number, type: number): boolean {
    const afc = (buf[off + 3]! >> 4) & 0x3;
    if ((afc === 2 || afc === 3) && buf[off + 4]! > 0 && (buf[off + 5]! & 0x40) !== 0) return true;
    if (type !== H264 && type !== H265) return false;
    const p = payloadOffset(buf, off);
    if (p < 0) return false;
    // Skip the PES header, then look for an IDR (H.264 type 5) or IRAP (H.265 16..21) NAL.
    if (buf[p] !== 0 || buf[p + 1] !== 0 || buf[p + 2] !== 1) return false;
    const end = off + TS_PACKET_SIZE;
    for (let i = p + 9 + buf[p + 8]!; i + 3 < end; i++) {
      if (buf[i] === 0 && buf[i + 1] === 0 && buf[i + 2] === 1) {
        const nal = buf[i + 3]!;
        if (type === H264 && (nal & 0x1f) === 5) return true;
        if (type === H265) {
          const t = (nal >> 1) & 0x3f;
          if (t >= 16 && t <= 21) return true;
        }
      }
    }
    return false;
  }
}

/** A run of aligned packets, with where (packet index) PATs and keyframes start in it. */
export interface TsSegment {
  data: Buffer;
  pats: number[];
  keyframes: number[];
}

/**
 * Cuts an arbitrary byte stream into whole 188-byte packets (re-syncing on garbage) and says
 * where PATs and keyframes start, so the channel can index join points inside its chunks.
 * One segment per aligned run: never more socket writes than upstream reads.
 */
export class TsPacketizer {
  private carry: Buffer | null = null;
  private synced = false;
  private readonly inspector = new TsInspector();
  /** Bytes thrown away while looking for sync. */
  droppedBytes = 0;

  /** What the PMT and the streams told so far (media_info). */
  get program(): ProgramInfo | null {
    return this.inspector.program;
  }

  /** The newest PCR base seen (90 kHz units), -1 before any (see TsInspector.lastPcr). */
  get lastPcr(): number {
    return this.inspector.lastPcr;
  }

  /** Continuity-counter errors so far (see TsInspector.ccErrors). */
  get ccErrors(): number {
    return this.inspector.ccErrors;
  }

  push(input: Buffer): TsSegment[] {
    const out: TsSegment[] = [];
    // Upstream reads rarely end on a packet boundary. Joining the carried bytes to this read
    // costs one copy per read per channel; emitting them as a segment of their own would cost
    // one more socket write per read per viewer, which is far more.
    const buf = this.carry ? Buffer.concat([this.carry, input]) : input;
    this.carry = null;
    let off = 0;
    while (off < buf.length) {
      if (!this.synced || buf[off] !== TS_SYNC_BYTE) {
        const found = findSync(buf, off);
        if (found < 0) {
          // Keep the tail in case a run starts there that the next read confirms.
          const keep = Math.min(buf.length - off, SYNC_CONFIRM * TS_PACKET_SIZE - 1);
          this.droppedBytes += buf.length - off - keep;
          this.carry = keep > 0 ? Buffer.from(buf.subarray(buf.length - keep)) : null;
          this.synced = false;
          return out;
        }
        this.droppedBytes += found - off;
        off = found;
        this.synced = true;
      }
      // The run of aligned packets from `off` while each starts with the sync byte.
      let end = off;
      while (end + TS_PACKET_SIZE <= buf.length && buf[end] === TS_SYNC_BYTE) end += TS_PACKET_SIZE;
      if (end > off) this.emit(buf.subarray(off, end), out);
      if (end + TS_PACKET_SIZE > buf.length) {
        if (end < buf.length) this.carry = Buffer.from(buf.subarray(end));
        return out;
      }
      off = end; // lost sync mid-buffer
      this.synced = false;
    }
    return out;
  }

  private emit(run: Buffer, out: TsSegment[]): void {
    const { pats, keyframes } = this.inspector.inspect(run, 0, run.length / TS_PACKET_SIZE);
    out.push({ data: run, pats, keyframes });
  }
}

/** Sync bytes in a row, 188 apart, needed to (re)gain sync: one stray 0x47 is not a packet. */
const SYNC_CONFIRM = 3;

/**
 * First offset where `SYNC_CONFIRM` packets in a row start with the sync byte; -1 when there is
 * none yet. A candidate whose confirming bytes have not arrived is never taken, so the answer
 * does not depend on how the stream was split into reads (the caller keeps the tail).
 */
export function findSync(buf: Buffer, from: number): number {
  const span = (SYNC_CONFIRM - 1) * TS_PACKET_SIZE;
  for (let i = buf.indexOf(TS_SYNC_BYTE, from); i >= 0 && i + span < buf.length; i = buf.indexOf(TS_SYNC_BYTE, i + 1)) {
    let k = 1;
    while (k < SYNC_CONFIRM && buf[i + k * TS_PACKET_SIZE] === TS_SYNC_BYTE) k++;
    if (k === SYNC_CONFIRM) return i;
  }
  return -1;
}
