// A viewer is a cursor into a Channel. It writes while its socket accepts and waits for
// `drain` once its queue passes a small budget, so a slow viewer queues at most that budget
// plus one chunk (views of the ring's blocks, which are not reused while it holds them; see
// heldFrom()) and never delays anyone else. A viewer that falls off the ring's tail jumps to
// the newest join point and counts a drop; too many drops and it is disconnected.
import type { Channel, ChannelReader, JoinPoint } from './channel.js';

/** The part of an http.ServerResponse (or socket) a viewer writes to. */
export interface ViewerSink {
  write(chunk: Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
  end(): unknown;
  destroy(error?: Error): unknown;
  cork?(): void;
  uncork?(): void;
  readonly destroyed: boolean;
  readonly writableLength?: number;
}

export type ViewerEndReason = 'source_ended' | 'too_slow' | 'stalled' | 'closed' | 'shed';

export interface ViewerOptions {
  maxDrops: number;
  /** Bytes a viewer may have queued in this process before it waits for 'drain'. */
  queueBudget: number;
  now?: () => number;
  onEnd?: (reason: ViewerEndReason) => void;
}

export class Viewer implements ChannelReader {
  private cursor = -1;
  /** Bytes to skip in the chunk at the cursor (a join point inside a chunk). */
  private skip = 0;
  private waiting = false;
  private done = false;
  /**
   * The writes the socket may still hold, oldest first, as pairs (chunk sequence number,
   * bytesSent once it was written) from index `heldHead`.
   */
  private held: number[] = [];
  private heldHead = 0;
  /** Whether the sink says its queue length (an http.ServerResponse does). */
  private readonly queueKnown: boolean;
  private readonly now: () => number;
  bytesSent = 0;
  drops = 0;
  /** When the socket last refused a write (0 while it accepts). */
  waitingSince = 0;
  firstByteAt = 0;
  /** When the viewer was made (ms): admission sheds the newest first. */
  readonly joinedAt: number;

  constructor(
    private readonly channel: Channel,
    private readonly sink: ViewerSink,
    private readonly opts: ViewerOptions,
  ) {
    this.now = opts.now ?? Date.now;
    this.joinedAt = this.now();
    this.queueKnown = sink.writableLength !== undefined;
  }

  /** Bytes queued in this process for the viewer's socket (not yet taken by the kernel). */
  backlog(): number {
    return this.sink.writableLength ?? 0;
  }

  /**
   * How far behind the live edge this viewer is (ms): the age of the oldest chunk in the ring
   * it has not been sent yet; 0 when it has everything. A viewer whose socket drains a little
   * every few hundred ms but slower than the stream arrives grows this without ever waiting
   * long for 'drain'.
   */
  behindMs(now: number): number {
    const ch = this.channel;
    if (this.done || this.cursor < 0 || this.cursor >= ch.nextSeq) return 0;
    return now - ch.arrivedAt(Math.max(this.cursor, ch.firstSeq));
  }

  get isDone(): boolean {
    return this.done;
  }

  /**
   * The oldest chunk (sequence number) whose bytes the socket may still hold, Infinity when it
   * holds none or is destroyed: the ring does not reuse that chunk's memory before
   * (ring-memory.ts). What the socket holds is the newest `writableLength` bytes written (less,
   * as that count includes the HTTP chunk framing), so a player that reads at playback speed
   * with a backlog that never empties still lets go of what it has been sent. A sink that
   * does not say its queue length holds from its first write on.
   */
  heldFrom(): number {
    if (this.sink.destroyed) {
      this.held = [];
      this.heldHead = 0;
      return Infinity;
    }
    this.trimHeld();
    return this.heldHead < this.held.length ? this.held[this.heldHead]! : Infinity;
  }

  /**
   * Forgets the writes the socket has sent. Run from heldFrom() only, which the ring asks at
   * least every 64 chunks (RingMemory.evictedBefore), so the list stays short without a cost
   * per write.
   */
  private trimHeld(): void {
    if (!this.queueKnown) return;
    const sent = this.bytesSent - this.sink.writableLength!;
    const h = this.held;
    while (this.heldHead < h.length && h[this.heldHead + 1]! <= sent) this.heldHead += 2;
    if (this.heldHead === h.length) {
      h.length = 0;
      this.heldHead = 0;
    } else if (this.heldHead >= 64) {
      this.held = h.slice(this.heldHead);
      this.heldHead = 0;
    }
  }

  /** Starts at a join point (default: the newest one). */
  start(at: JoinPoint = this.channel.joinPoint()): void {
    this.cursor = at.seq;
    this.skip = at.offset;
    this.channel.addReader(this);
    this.pump();
  }

  wake(): void {
    if (!this.waiting) this.pump();
  }

  end(): void {
    // Source gone for good: what the socket holds is flushed, then it closes.
    this.finish('source_ended', false);
  }

  /** Disconnects the viewer (deleted stream, stall, shutdown). */
  close(reason: ViewerEndReason): void {
    this.finish(reason, true);
  }

  private pump(): void {
    const ch = this.channel;
    // Several chunks due (a join, a catch-up): one writev instead of a syscall per chunk.
    const batch = ch.nextSeq - this.cursor > 1 && this.sink.cork !== undefined;
    if (batch) this.sink.cork!();
    try {
      this.drain();
    } finally {
      if (batch && !this.sink.destroyed) this.sink.uncork!();
    }
  }

  private drain(): void {
    const ch = this.channel;
    while (!this.done && this.cursor < ch.nextSeq) {
      if (this.cursor < ch.firstSeq) {
        this.drops++;
        if (this.drops >= this.opts.maxDrops) return this.finish('too_slow', true);
        const at = ch.joinPoint();
        this.cursor = at.seq;
        this.skip = at.offset;
        continue;
      }
      const seq = this.cursor++;
      let chunk = ch.chunk(seq);
      if (this.skip > 0) {
        chunk = chunk.subarray(this.skip);
        this.skip = 0;
      }
      if (this.bytesSent === 0) this.firstByteAt = this.now();
      this.bytesSent += chunk.length;
      // Only the oldest write matters to a sink that does not say its queue length.
      if (this.queueKnown || this.held.length === 0) this.held.push(seq, this.bytesSent);
      // write() says false for any chunk above the socket's 16 KiB high-water mark, even when
      // the kernel took it all; waiting for 'drain' after every chunk costs a round of
      // listeners per chunk per viewer. Wait only once the bytes queued here pass a budget.
      if (!this.sink.write(chunk) && (this.sink.writableLength ?? Infinity) > this.opts.queueBudget) {
        this.waiting = true;
        this.waitingSince = this.now();
        this.sink.once('drain', this.onDrain);
        return;
      }
    }
  }

  private readonly onDrain = (): void => {
    this.waiting = false;
    this.waitingSince = 0;
    this.pump();
  };

  private finish(reason: ViewerEndReason, destroy: boolean): void {
    if (this.done) return;
    this.done = true;
    this.channel.removeReader(this);
    if (!this.sink.destroyed) {
      if (destroy) this.sink.destroy();
      else this.sink.end();
    }
    this.opts.onEnd?.(reason);
  }
}
