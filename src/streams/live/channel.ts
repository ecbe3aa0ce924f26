// The ring of one stream on one worker: the last few seconds of the source (sized by the byte
// rate it arrives at, not by a fixed byte count), with the join points (chunks that start at a
// PAT, preferably one followed by a keyframe). Every viewer reads the same bytes; nothing is
// copied per viewer. The bytes live in reused blocks (ring-memory.ts), copied there once.
import { MediaClock } from '../mpegts/media-clock.js';
import { sniff } from '../mpegts/sniff.js';
import { NULL_PACKET, TS_PACKET_SIZE, TsPacketizer, type TsSegment } from '../mpegts/ts-packets.js';
import type { ProgramInfo } from '../mpegts/media-info.js';
import { RingMemory, type ChunkHolder } from './ring-memory.js';

export interface ChannelOptions {
  /** Ceiling in bytes, whatever the rate or GOP (CHANNEL_BUFFER_BYTES). */
  maxBytes: number;
  /**
   * Milliseconds of source to keep (CHANNEL_BUFFER_SECONDS): chunks older than this, and bytes
   * beyond the observed byte rate × this, are evicted, except the newest join point's GOP.
   */
  maxAgeMs: number;
  /** Raw mode: no TS alignment (a source that is not MPEG-TS). */
  raw?: boolean;
  /**
   * Milliseconds a source's reads may wait to be joined into one ring chunk
   * (CHANNEL_COALESCE_MS; 0: each read is a chunk). Every chunk costs one socket write per
   * viewer, so fewer, larger chunks cut the per-write cost (Node's HTTP write path, a syscall)
   * that dominates a fan-out; the first bytes of a channel are never held.
   */
  coalesceMs?: number;
  /** A pending chunk is flushed at once when it reaches this many bytes (default 256 KiB). */
  coalesceBytes?: number;
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
  /** A reader that hands chunks to a socket says which it may still hold (see ChunkHolder). */
  heldFrom?(): number;
  readonly isDone?: boolean;
}

const KEEPALIVE_CHUNK = Buffer.concat(Array.from({ length: 7 }, () => NULL_PACKET));
/** The byte rate is measured over this much arrival time (long enough to smooth bursty sources). */
const RATE_WINDOW_MS = 8000;
/** One rate sample per this much time. */
const RATE_SAMPLE_MS = 500;
/**
 * The newest join point is kept even when older than `maxAgeMs` (a GOP longer than the time
 * budget), but not older than this: a source silent that long must not pin stale media.
 */
const JOIN_FLOOR_MAX_AGE_MS = 20_000;

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
  /** (arrival time, bytesIn) samples over the last RATE_WINDOW_MS, oldest first. */
  private rateTimes: number[] = [];
  private rateBytes: number[] = [];
  /** Source reads not yet in the ring (coalescing), with their join-point marks. */
  private pending: TsSegment[] = [];
  private pendingBytes = 0;
  private flushTimer: NodeJS.Timeout | null = null;
  private readonly clock = new MediaClock();
  /** The blocks chunks are copied into and reused from. */
  private readonly memory = new RingMemory();

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

  /**
   * Bytes per second the source arrived at over the last few seconds (up to RATE_WINDOW_MS);
   * 0 until a second of arrivals is measured.
   */
  get byteRate(): number {
    const n = this.rateTimes.length;
    if (n < 2) return 0;
    const span = this.rateTimes[n - 1]! - this.rateTimes[0]!;
    return span >= 1000 ? ((this.rateBytes[n - 1]! - this.rateBytes[0]!) * 1000) / span : 0;
  }

  /**
   * What the ring aims to hold: byte rate × `maxAgeMs`, at most `maxBytes` (all of `maxBytes`
   * until the rate is known). The newest join point's GOP is kept beyond it (see evict()).
   */
  get budgetBytes(): number {
    const rate = this.byteRate;
    return rate > 0 ? Math.min(this.opts.maxBytes, Math.ceil((rate * this.opts.maxAgeMs) / 1000)) : this.opts.maxBytes;
  }

  /**
   * Media seconds (by the source's PCR) arriving per wall second over the last ~2 s: about 1
   * for a live source read on time, below 1 when it is read late; null when not known (no
   * PCR, raw mode, under 1.5 s measured). See MediaClock.
   */
  get clockRatio(): number | null {
    return this.clock.ratio(this.now());
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

  /** When the chunk with this sequence number arrived (ms); the caller checks the range first. */
  arrivedAt(seq: number): number {
    return this.times[seq - this.base]!;
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
    const segs: TsSegment[] = this.packetizer ? this.packetizer.push(data) : [{ data, pats: [], keyframes: [] }];
    if (segs.length === 0) return; // only a partial packet so far
    this.lastDataAt = this.now();
    this.sampleRate(this.lastDataAt);
    const pcr = this.packetizer?.lastPcr ?? -1;
    if (pcr >= 0) this.clock.sample(this.lastDataAt, pcr);
    for (const seg of segs) {
      this.pending.push(seg);
      this.pendingBytes += seg.data.length;
    }
    const hold = this.opts.coalesceMs ?? 0;
    // The first bytes go out at once (a cold start's first viewer is waiting for them).
    if (hold <= 0 || this.nextSeq === this.base || this.pendingBytes >= (this.opts.coalesceBytes ?? DEFAULT_COALESCE_BYTES)) {
      this.flush();
    } else if (!this.flushTimer) {
      this.flushTimer = setTimeout(this.onFlushTimer, hold);
      this.flushTimer.unref();
    }
  }

  private readonly onFlushTimer = (): void => {
    this.flushTimer = null;
    this.flush();
  };

  /** Forgets the reads held for coalescing (the owner lost its lease: they must not pass on). */
  dropPending(): void {
    if (this.flushTimer) {
      clearTimeout(this.flushTimer);
      this.flushTimer = null;
    }
    this.pending = [];
    this.pendingBytes = 0;
  }

  /** Moves the pending reads into the ring as one chunk and wakes the readers. */
  private flush(): void {
    const segs = this.pending;
    this.dropPending();
    if (segs.length === 0) return;
    // A flush timer can run after a freeze before the lease's overdue deadline timer: the
    // lease is asked again here (a loss found here drops what is held, see dropPending).
    if (this.admit && !this.admit()) return;
    // Join points are packet indexes inside their read: shifted by the packets before it.
    const pats: number[] = [];
    const keyframes: number[] = [];
    let packets = 0;
    let total = 0;
    for (const seg of segs) {
      for (const p of seg.pats) pats.push(packets + p);
      for (const k of seg.keyframes) keyframes.push(packets + k);
      packets += seg.data.length / TS_PACKET_SIZE;
      total += seg.data.length;
    }
    // One copy per chunk per channel, into reused memory; it also buys one write instead of
    // several per viewer.
    const data = this.memory.store(segs.map((seg) => seg.data), total, this.nextSeq);
    this.index(this.append(data), pats, keyframes);
    this.evict();
    for (const r of this.readers) r.wake();
  }

  /**
   * A new upstream connection (or FFmpeg run) starts: the partial packet carried from the old
   * one is dropped so it is never glued to the new bytes.
   */
  restartInput(): void {
    this.flush();
    if (this.packetizer) this.packetizer = new TsPacketizer();
  }

  /** Null packets for readers while the source reconnects; not a join point. */
  keepAlive(): void {
    // Null TS packets would corrupt a raw (non-TS) stream.
    if (this.ended || !this.hasData || this.readers.size === 0 || !this.packetizer) return;
    this.flush();
    this.append(KEEPALIVE_CHUNK);
    this.evict();
    for (const r of this.readers) r.wake();
  }

  addReader(r: ChannelReader): void {
    this.readers.add(r);
    if (r.heldFrom) this.memory.addHolder(r as ChunkHolder);
  }

  /** Bytes of block memory the ring holds (see RingMemory). */
  get reservedBytes(): number {
    return this.memory.reservedBytes;
  }

  removeReader(r: ChannelReader): void {
    this.readers.delete(r);
  }

  /** Ends the channel: readers finish what they can and close. */
  end(error?: Error): void {
    if (this.ended) return;
    if (this.sniffing && this.sniffing.length > 0) this.write(Buffer.alloc(0), true); // a short body: decide with what came
    this.flush();
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

  /**
   * Keeps one (time, bytesIn) sample per RATE_SAMPLE_MS slot, spanning RATE_WINDOW_MS. A
   * sample is updated by every arrival in its slot, so the bytes of a burst count from the
   * instant they arrived and the window's oldest burst is not counted twice.
   */
  private sampleRate(now: number): void {
    const n = this.rateTimes.length;
    if (n > 0 && Math.floor(now / RATE_SAMPLE_MS) === Math.floor(this.rateTimes[n - 1]! / RATE_SAMPLE_MS)) {
      this.rateTimes[n - 1] = now;
      this.rateBytes[n - 1] = this.bytesIn;
    } else {
      this.rateTimes.push(now);
      this.rateBytes.push(this.bytesIn);
    }
    while (this.rateTimes.length > 2 && now - this.rateTimes[1]! >= RATE_WINDOW_MS) {
      this.rateTimes.shift();
      this.rateBytes.shift();
    }
  }

  /**
   * Drops the oldest chunks while the ring holds more than `maxBytes`, or chunks older than
   * `maxAgeMs`, or more than the rate budget; but never the chunk a new reader would start at
   * (its GOP is what a join needs, however long the GOP) unless `maxBytes` forces it or that
   * join point is older than JOIN_FLOOR_MAX_AGE_MS. So a channel holds about rate × seconds,
   * whatever its bitrate, and at least one GOP.
   */
  private evict(): void {
    const now = this.now();
    const oldest = now - this.opts.maxAgeMs;
    const budget = this.budgetBytes;
    const floor = this.joinPoint().seq;
    const floorPinned = this.times[floor - this.base]! >= now - JOIN_FLOOR_MAX_AGE_MS;
    // Keep at least the newest chunk so a joining reader always has something.
    while (this.chunks.length - this.head > 1) {
      if (this.bytes <= this.opts.maxBytes) {
        if (floorPinned && this.firstSeq >= floor) break;
        if (this.bytes <= budget && this.times[this.head]! >= oldest) break;
      }
      this.bytes -= this.chunks[this.head]!.length;
      this.chunks[this.head] = EMPTY;
      this.head++;
    }
    const first = this.firstSeq;
    this.memory.evictedBefore(first);
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
const DEFAULT_COALESCE_BYTES = 256 * 1024;
