// Where a channel's ring keeps its bytes: blocks (64 KiB to 4 MiB, sized by the chunks), each
// filled with chunks in order and reused once no chunk of the ring and no viewer's socket
// queue refers to it.
//
// Why: a fresh Buffer per chunk that lives the ring's few seconds is promoted to V8's old
// generation, and its bytes count as external memory there. At tens of MB/s of such Buffers
// (200 channels at 4 Mbit/s on two workers) V8 starts a mark-compact every few hundred ms and
// malloc hands out cold memory for every read; with reused blocks neither happens
// (BENCHMARKS.md, target 5: the same 600 viewers at −16 % CPU in interleaved runs).

/** Something that may still send chunk bytes after the ring dropped them: a viewer's socket queue. */
export interface ChunkHolder {
  /**
   * The oldest chunk (sequence number) whose bytes it may still hold; Infinity when it holds
   * none. It writes only chunks still in the ring, in order, so it never comes to hold a
   * chunk of a block already out of the ring.
   */
  heldFrom(): number;
  /** True once it will never write another chunk (it may still be flushing its queue). */
  readonly isDone: boolean;
}

interface Block {
  buf: Buffer;
  used: number;
  /** Sequence number of the newest chunk stored in it (-1: none yet). */
  lastSeq: number;
}

/** Blocks out of the ring kept for reuse (in a steady state one is reused as one leaves); older ones are left to the GC. */
const MAX_SPARE = 2;
/** The smallest block: 4 s of a 128 kbit/s radio stream. */
const MIN_BLOCK = 64 * 1024;
/** A new block is sized for this many typical chunks. */
const CHUNKS_PER_BLOCK = 4;
/** Blocks never grow past this (a chunk over half of it gets a Buffer of its own). */
const MAX_BLOCK = 4 * 1024 * 1024;

export class RingMemory {
  /**
   * The size of the source's larger chunks: the largest, fading by 1/64 per chunk stored (a
   * burst is forgotten after a few seconds of chunks), so block sizes follow the bitrate
   * without following every burst.
   */
  private typical = 0;
  /** Blocks with chunks in the ring, oldest first; the last one is being filled. */
  private readonly live: Block[] = [];
  /** Blocks out of the ring, oldest first: reused once no holder holds them. */
  private readonly spare: Block[] = [];
  private readonly holders = new Set<ChunkHolder>();
  /** Evictions since holders were last looked at. */
  private sinceSweep = 0;
  /** Blocks made and blocks reused over the ring's life (tests, diagnostics). */
  allocated = 0;
  reused = 0;

  /** Holders known (finished ones are forgotten once they hold nothing). */
  get holderCount(): number {
    return this.holders.size;
  }

  /** Bytes of block memory this ring holds (live and spare blocks). */
  get reservedBytes(): number {
    let n = 0;
    for (const b of this.live) n += b.buf.length;
    for (const b of this.spare) n += b.buf.length;
    return n;
  }

  /** A reader that writes ring chunks to a socket: its queue pins the blocks it refers to. */
  addHolder(h: ChunkHolder): void {
    this.holders.add(h);
  }

  /**
   * Copies `parts` (`total` bytes) into block memory as chunk `seq` (sequence numbers grow)
   * and returns the view the ring keeps. A chunk over half the largest block (2 MiB; an HLS
   * segment read whole) is not copied into a block: returned as it came (one part, maybe a
   * view of the source's own read) or joined into a Buffer of its own.
   */
  store(parts: readonly Buffer[], total: number, seq: number): Buffer {
    if (total * 2 > MAX_BLOCK) return parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
    this.typical = Math.max(total, this.typical - this.typical / 64);
    let block = this.live[this.live.length - 1];
    if (!block || block.buf.length - block.used < total) {
      block = this.take(total);
      this.live.push(block);
    }
    const at = block.used;
    for (const p of parts) block.used += p.copy(block.buf, block.used);
    block.lastSeq = seq;
    return block.buf.subarray(at, block.used);
  }

  /** The ring's oldest chunk is now `firstSeq`: blocks with nothing newer leave the ring. */
  evictedBefore(firstSeq: number): void {
    // The block being filled stays: its free space is where the next chunk goes.
    while (this.live.length > 1 && this.live[0]!.lastSeq < firstSeq) this.spare.push(this.live.shift()!);
    if (this.spare.length > MAX_SPARE) this.spare.splice(0, this.spare.length - MAX_SPARE);
    // Finished holders are forgotten in take(); a ring that seldom takes a block (oversize
    // chunks, keep-alives while the source is away) must not keep them for its whole life.
    if (++this.sinceSweep >= 64) this.oldestHeld();
  }

  /**
   * The oldest spare block if no holder needs it and its size suits the source (within a
   * factor 2 of four typical chunks, and room for this one), else a new block of four
   * typical chunks.
   */
  private take(total: number): Block {
    let want = MIN_BLOCK;
    while (want < this.typical * CHUNKS_PER_BLOCK && want < MAX_BLOCK) want *= 2;
    const oldest = this.spare[0];
    if (oldest && oldest.lastSeq < this.oldestHeld()) {
      this.spare.shift();
      const size = oldest.buf.length;
      if (size >= total && size * 2 >= want && size <= want * 2) {
        oldest.used = 0;
        oldest.lastSeq = -1;
        this.reused++;
        return oldest;
      }
      // Outgrown, or far too large for what the source sends now: left to the GC.
    }
    this.allocated++;
    return { buf: Buffer.allocUnsafeSlow(want), used: 0, lastSeq: -1 };
  }

  /** The oldest chunk any holder may still send; holders that are done and hold nothing are forgotten. */
  private oldestHeld(): number {
    this.sinceSweep = 0;
    let min = Infinity;
    for (const h of this.holders) {
      const from = h.heldFrom();
      if (from === Infinity) {
        if (h.isDone) this.holders.delete(h);
      } else if (from < min) min = from;
    }
    return min;
  }
}
