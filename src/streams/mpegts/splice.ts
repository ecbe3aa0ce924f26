// The seam between two upstream connections of one live channel (a reconnect or a failover):
// the new source's bytes are passed on from its first PAT (so PAT, then PMT, precede its
// media and decoders learn the new programme before any PES), and the first packet with an
// adaptation field on each pid gets its discontinuity_indicator set (ISO/IEC 13818-1
// 2.4.3.5), so players reset their clocks (PCR, continuity counters) instead of stalling.
// Applied to the first bytes of a connection only; afterwards it is a pass-through.
import { findSync, packetPid, TS_PACKET_SIZE, TS_SYNC_BYTE } from './ts-packets.js';

/** Give up waiting for a PAT after this many bytes (not TS, or a PAT-less feed): pass through. */
const MAX_SEARCH_BYTES = 1024 * 1024;
/** Flag discontinuities in this many packets after the PAT at most. */
const FLAG_WINDOW_PACKETS = 4096;

export class SpliceFilter {
  private searching = true;
  private carry: Buffer | null = null;
  private searched = 0;
  /** Bytes into the current packet at the start of the next chunk (once aligned). */
  private phase = 0;
  private flagLeft = FLAG_WINDOW_PACKETS;
  private readonly flagged = new Set<number>();
  /** Packets whose discontinuity_indicator was set (for tests and logs). */
  flaggedPackets = 0;

  /** Whether the seam is behind us (everything passes through unchanged). */
  get done(): boolean {
    return !this.searching && this.flagLeft <= 0;
  }

  /** The bytes to append to the channel for this upstream chunk (possibly empty). */
  push(chunk: Buffer): Buffer {
    if (this.done) return chunk;
    let buf = chunk;
    if (this.searching) {
      buf = this.carry ? Buffer.concat([this.carry, chunk]) : chunk;
      this.carry = null;
      const at = findPat(buf);
      if (at < 0) {
        this.searched += chunk.length;
        if (this.searched >= MAX_SEARCH_BYTES) {
          this.searching = false;
          this.flagLeft = 0;
          return buf;
        }
        // Keep a packet's worth in case the PAT straddles the chunk boundary.
        this.carry = Buffer.from(buf.subarray(Math.max(0, buf.length - 2 * TS_PACKET_SIZE)));
        return EMPTY;
      }
      this.searching = false;
      buf = buf.subarray(at);
      this.phase = 0;
    }
    this.flag(buf);
    return buf;
  }

  /** Sets the discontinuity bit on the first adaptation field of each pid in the window. */
  private flag(buf: Buffer): void {
    let off = (TS_PACKET_SIZE - this.phase) % TS_PACKET_SIZE;
    for (; off + TS_PACKET_SIZE <= buf.length && this.flagLeft > 0; off += TS_PACKET_SIZE) {
      this.flagLeft--;
      if (buf[off] !== TS_SYNC_BYTE) continue;
      const pid = packetPid(buf, off);
      if (pid === 0x1fff || this.flagged.has(pid)) continue;
      const afc = (buf[off + 3]! >> 4) & 0x3;
      if ((afc === 2 || afc === 3) && buf[off + 4]! > 0) {
        buf[off + 5] = buf[off + 5]! | 0x80;
        this.flagged.add(pid);
        this.flaggedPackets++;
      }
    }
    this.phase = (this.phase + buf.length) % TS_PACKET_SIZE;
  }
}

/** Offset of the first aligned packet of pid 0 that starts a section, or -1. */
function findPat(buf: Buffer): number {
  let off = findSync(buf, 0);
  if (off < 0) return -1;
  for (; off + TS_PACKET_SIZE <= buf.length; off += TS_PACKET_SIZE) {
    if (buf[off] !== TS_SYNC_BYTE) {
      off = findSync(buf, off);
      if (off < 0) return -1;
    }
    if (packetPid(buf, off) === 0 && (buf[off + 1]! & 0x40) !== 0) return off;
  }
  return -1;
}

const EMPTY = Buffer.alloc(0);
