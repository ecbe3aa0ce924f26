// The ring of one stream on one worker: recent TS chunks bounded in bytes and seconds, with
// the join points (chunks that start at a PAT, preferably one followed by a keyframe).
// Every viewer reads the same Buffer objects; nothing is copied per viewer.
import { NULL_PACKET, TsPacketizer } from './ts-packets.js';

export interface ChannelOptions {
  maxBytes: number;
  maxAgeMs: number;
  /** Raw mode: no TS alignment (a source that is not MPEG-TS). */
  raw?: boolean;
  now?: () => number;
}

/** Something that reads the channel: woken after every append. */
export interface ChannelReader {
  wake(): void;
  /** The channel ended: the source is gone for good. */
  end(error?: Error): void;
}

const RAW_AFTER_BYTES = 64 * 1024;
const KEEPALIVE_CHUNK = Buffer.concat(Array.from({ length: 7 }, () => NULL_PACKET));

export class Channel {
  private chunks: Buffer[] = [];
  private times: number[] = [];
  private head = 0; // index in `chunks` of sequence `firstSeq`
  private base = 0; // sequence number of chunks[0]
  private bytes = 0;
  /** Join points, oldest first: sequence numbers of chunks that start at a PAT. */
  private pats: number[] = [];
  /** Of those, the ones whose GOP starts with a keyframe. */
  private keyPats: number[] = [];
  private lastPat = -1;
  private packetizer: TsPacketizer | null;
  private readonly readers = new Set<ChannelReader>();
  private readonly now: () => number;
  private ended = false;

  /** Bytes appended over the channel's life (upstream bytes, for stats). */
  bytesIn = 0;
  /** When the last real packets were appended (keep-alives excluded); 0 before any. */
  lastDataAt = 0;

  constructor(private readonly opts: ChannelOptions) {
    this.packetizer = opts.raw ? null : new TsPacketizer();
    this.now = opts.now ?? Date.now;
  }

  get firstSeq(): number {
    return this.base + this.head;
  }

  get nextSeq(): number {
    return this.base + this.chunks.length;
  }

  get hasData(): boolean {
    return this.lastDataAt > 0;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  get bufferedBytes(): number {
    return this.bytes;
  }

  get readerCount(): number {
    return this.readers.size;
  }

  /** The chunk with this sequence number; the caller checks the range first. */
  chunk(seq: number): Buffer {
    return this.chunks[seq - this.base]!;
  }

  /**
   * Where a new reader starts: the newest PAT that opens a GOP with a keyframe, else the
   * newest PAT, else the newest chunk (still packet-aligned).
   */
  joinSeq(): number {
    const first = this.firstSeq;
    const key = this.keyPats[this.keyPats.length - 1];
    if (key !== undefined && key >= first) return key;
    const pat = this.pats[this.pats.length - 1];
    if (pat !== undefined && pat >= first) return pat;
    return Math.max(first, this.nextSeq - 1);
  }

  write(data: Buffer): void {
    if (this.ended || data.length === 0) return;
    this.bytesIn += data.length;
    const before = this.nextSeq;
    if (!this.packetizer) {
      this.append(data, false);
    } else {
      const segments = this.packetizer.push(data);
      // No TS sync in the first bytes: not MPEG-TS at all, so pass it through unaligned.
      if (this.nextSeq === 0 && segments.length === 0 && this.packetizer.droppedBytes >= RAW_AFTER_BYTES) {
        this.packetizer = null;
      }
      for (const seg of segments) {
        const seq = this.append(seg.data, seg.pat);
        if (seg.pat) this.lastPat = seq;
        // The GOP that starts at the last PAT has a keyframe: that PAT is a clean join point.
        if (seg.keyframe && this.lastPat >= 0 && this.keyPats[this.keyPats.length - 1] !== this.lastPat) {
          this.keyPats.push(this.lastPat);
        }
      }
    }
    if (this.nextSeq === before) return; // only a partial packet so far
    this.lastDataAt = this.now();
    this.evict();
    for (const r of this.readers) r.wake();
  }

  /** Null packets for readers while the source reconnects; not a join point. */
  keepAlive(): void {
    if (this.ended || !this.hasData || this.readers.size === 0) return;
    this.append(KEEPALIVE_CHUNK, false);
    this.evict();
    for (const r of this.readers) r.wake();
  }

  addReader(r: ChannelReader): void {
    this.readers.add(r);
  }

  removeReader(r: ChannelReader): void {
    this.readers.delete(r);
  }

  /** Ends the channel: readers finish what they can and close. */
  end(error?: Error): void {
    if (this.ended) return;
    this.ended = true;
    for (const r of [...this.readers]) r.end(error);
    this.readers.clear();
  }

  private append(buf: Buffer, pat: boolean): number {
    const seq = this.nextSeq;
    this.chunks.push(buf);
    this.times.push(this.now());
    this.bytes += buf.length;
    if (pat) this.pats.push(seq);
    return seq;
  }

  private evict(): void {
    const oldest = this.now() - this.opts.maxAgeMs;
    // Keep at least the newest chunk so a joining reader always has something.
    while (this.chunks.length - this.head > 1) {
      if (this.bytes <= this.opts.maxBytes && this.times[this.head]! >= oldest) break;
      this.bytes -= this.chunks[this.head]!.length;
      this.chunks[this.head] = EMPTY;
      this.head++;
    }
    const first = this.firstSeq;
    while (this.pats.length > 0 && this.pats[0]! < first) this.pats.shift();
    while (this.keyPats.length > 0 && this.keyPats[0]! < first) this.keyPats.shift();
    if (this.head > 1024 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.times = this.times.slice(this.head);
      this.base += this.head;
      this.head = 0;
    }
  }
}

const EMPTY = Buffer.alloc(0);
