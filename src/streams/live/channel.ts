// The ring of one stream on one worker: recent TS chunks bounded in bytes and seconds, with
// the join points (chunks that start at a PAT, preferably one followed by a keyframe).
// Every viewer reads the same Buffer objects; nothing is copied per viewer.
import { sniff } from '../mpegts/sniff.js';
import { NULL_PACKET, TS_PACKET_SIZE, TsPacketizer } from '../mpegts/ts-packets.js';
import type { ProgramInfo } from '../mpegts/media-info.js';

export interface ChannelOptions {
  maxBytes: number;
  maxAgeMs: number;
  /** Raw mode: no TS alignment (a source that is not MPEG-TS). */
  raw?: boolean;
  now?: () => number;
}

/** A place a reader may start: a PAT at `offset` bytes into chunk `seq`. */
export interface JoinPoint {
  seq: number;
  offset: number;
}

/** Something that reads the channel: woken after every append. */
export interface ChannelReader {
  wake(): void;
  /** The channel ended: the source is gone for good. */
  end(error?: Error): void;
}

const KEEPALIVE_CHUNK = Buffer.concat(Array.from({ length: 7 }, () => NULL_PACKET));

export class Channel {
  private chunks: Buffer[] = [];
  private times: number[] = [];
  private head = 0; // index in `chunks` of sequence `firstSeq`
  private base = 0; // sequence number of chunks[0]
  private bytes = 0;
  /** Join points, oldest first: every PAT in the ring. */
  private pats: JoinPoint[] = [];
  /** Of those, the ones whose GOP holds a keyframe: clean starts. */
  private keyPats: JoinPoint[] = [];
  private lastPat: JoinPoint | null = null;
  private packetizer: TsPacketizer | null;
  /** The first bytes, held until sniff() tells MPEG-TS from other media; null once decided. */
  private sniffing: Buffer | null;
  private readonly readers = new Set<ChannelReader>();
  private readonly now: () => number;
  private ended = false;

  /** Bytes appended over the channel's life (upstream bytes, for stats). */
  bytesIn = 0;
  /** When the last real packets were appended (keep-alives excluded); 0 before any. */
  lastDataAt = 0;
  /** The Content-Type the source announced (raw mode passes it on to viewers). */
  sourceContentType: string | null = null;
  /**
   * Asked before each write is taken in; false drops the bytes. The owning session's lease
   * check: an owner past its lease deadline must not pass on one more byte of its source.
   */
  admit: (() => boolean) | null = null;

  constructor(private readonly opts: ChannelOptions) {
    this.packetizer = opts.raw ? null : new TsPacketizer();
    this.sniffing = opts.raw ? null : Buffer.alloc(0);
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

  /** What the TS's PMT and streams told so far (media_info); null for raw passthrough. */
  get program(): ProgramInfo | null {
    return this.packetizer?.program ?? null;
  }

  get bufferedBytes(): number {
    return this.bytes;
  }

  /** MPEG-TS continuity-counter errors in what was written (0 in raw mode). */
  get ccErrors(): number {
    return this.packetizer?.ccErrors ?? 0;
  }

  /** Whether the source is passed through unaligned (it is not MPEG-TS). */
  get isRaw(): boolean {
    return this.packetizer === null;
  }

  /** What viewers are told they get: MPEG-TS, or the source's own type in raw mode. */
  get contentType(): string {
    return this.packetizer ? 'video/mp2t' : (this.sourceContentType ?? 'application/octet-stream');
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
   * newest PAT, else the start of the newest chunk (still packet-aligned).
   */
  joinPoint(): JoinPoint {
    const first = this.firstSeq;
    const key = this.keyPats[this.keyPats.length - 1];
    if (key && key.seq >= first) return key;
    const pat = this.pats[this.pats.length - 1];
    if (pat && pat.seq >= first) return pat;
    return { seq: Math.max(first, this.nextSeq - 1), offset: 0 };
  }

  write(data: Buffer, final = false): void {
    if (this.ended || (data.length === 0 && !final)) return;
    if (this.admit && !this.admit()) return;
    this.bytesIn += data.length;
    if (this.sniffing) {
      // MPEG-TS is decided by a run of sync bytes at the start, not by one stray 0x47 and not
      // by a label; anything else (ADTS radio, MP3, …) passes through from byte 0, at once.
      const head = this.sniffing.length > 0 ? Buffer.concat([this.sniffing, data]) : data;
      const found = sniff(head, final);
      if (found.kind === 'need_more') {
        this.sniffing = head;
        return;
      }
      this.sniffing = null;
      if (found.kind !== 'ts') this.packetizer = null;
      data = head;
    }
    if (data.length === 0) return;
    const before = this.nextSeq;
    if (!this.packetizer) {
      this.append(data);
    } else {
      for (const seg of this.packetizer.push(data)) this.index(this.append(seg.data), seg.pats, seg.keyframes);
    }
    if (this.nextSeq === before) return; // only a partial packet so far
    this.lastDataAt = this.now();
    this.evict();
    for (const r of this.readers) r.wake();
  }

  /**
   * A new upstream connection (or FFmpeg run) starts: the partial packet carried from the old
   * one is dropped so it is never glued to the new bytes.
   */
  restartInput(): void {
    if (this.packetizer) this.packetizer = new TsPacketizer();
  }

  /** Null packets for readers while the source reconnects; not a join point. */
  keepAlive(): void {
    // Null TS packets would corrupt a raw (non-TS) stream.
    if (this.ended || !this.hasData || this.readers.size === 0 || !this.packetizer) return;
    this.append(KEEPALIVE_CHUNK);
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
    if (this.sniffing && this.sniffing.length > 0) this.write(Buffer.alloc(0), true); // a short body: decide with what came
    this.ended = true;
    for (const r of [...this.readers]) r.end(error);
    this.readers.clear();
  }

  private append(buf: Buffer): number {
    const seq = this.nextSeq;
    this.chunks.push(buf);
    this.times.push(this.now());
    this.bytes += buf.length;
    return seq;
  }

  /** Records the chunk's PATs; a keyframe after the last PAT makes that PAT a clean start. */
  private index(seq: number, pats: number[], keyframes: number[]): void {
    let k = 0;
    const markKey = (): void => {
      const last = this.lastPat;
      if (last && this.keyPats[this.keyPats.length - 1] !== last) this.keyPats.push(last);
    };
    for (const p of pats) {
      for (; k < keyframes.length && keyframes[k]! < p; k++) markKey();
      this.lastPat = { seq, offset: p * TS_PACKET_SIZE };
      this.pats.push(this.lastPat);
    }
    if (k < keyframes.length) markKey();
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
    while (this.pats.length > 0 && this.pats[0]!.seq < first) this.pats.shift();
    while (this.keyPats.length > 0 && this.keyPats[0]!.seq < first) this.keyPats.shift();
    if (this.head > 1024 && this.head * 2 > this.chunks.length) {
      this.chunks = this.chunks.slice(this.head);
      this.times = this.times.slice(this.head);
      this.base += this.head;
      this.head = 0;
    }
  }
}

const EMPTY = Buffer.alloc(0);
