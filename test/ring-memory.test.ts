// Issue 19, target 5: the ring copies its chunks into reused blocks (ring-memory.ts). A block
// is reused only when no chunk of the ring and no viewer's socket queue refers to it: a viewer
// whose socket still holds bytes must send exactly what was written, however much the ring
// took in meanwhile.
import { expect } from 'chai';
import fc from 'fast-check';
import { Channel } from '../src/streams/live/channel.js';
import { RingMemory, type ChunkHolder } from '../src/streams/live/ring-memory.js';
import { Viewer, type ViewerSink } from '../src/streams/live/viewer.js';
import { report } from './support/report.js';

const KiB = 1024;

/** `n` bytes of one value. */
const bytes = (n: number, v: number): Buffer => Buffer.alloc(n, v);

/** A holder that holds from a settable chunk on. */
class FixedHolder implements ChunkHolder {
  from = Infinity;
  isDone = false;
  heldFrom(): number {
    return this.from;
  }
}

/**
 * A socket that queues what it is given (by reference, as Node's stream does) until `send()`
 * takes bytes off it, as the kernel would; it remembers each write's bytes as they were when
 * written, so a write whose memory changed before it was sent is caught.
 */
class QueueSink implements ViewerSink {
  destroyed = false;
  private queue: Array<{ ref: Buffer; at: Buffer }> = [];
  private drainListeners: Array<() => void> = [];
  /** Writes whose bytes changed while queued. */
  corrupted = 0;
  sent = 0;

  get writableLength(): number {
    return this.queue.reduce((n, q) => n + q.ref.length, 0);
  }

  write(chunk: Buffer): boolean {
    this.queue.push({ ref: chunk, at: Buffer.from(chunk) });
    return this.writableLength < 16 * KiB;
  }

  once(_event: 'drain', listener: () => void): unknown {
    this.drainListeners.push(listener);
    return this;
  }

  /** Sends up to `max` queued writes (whole), checking each against its bytes when written. */
  send(max = Infinity): void {
    for (let i = 0; i < max && this.queue.length > 0; i++) {
      const q = this.queue.shift()!;
      if (!q.ref.equals(q.at)) this.corrupted++;
      this.sent += q.ref.length;
    }
    if (this.queue.length === 0 && this.drainListeners.length > 0) {
      const listeners = this.drainListeners;
      this.drainListeners = [];
      for (const l of listeners) l();
    }
  }

  end(): unknown {
    return this;
  }

  destroy(): unknown {
    this.destroyed = true;
    this.queue = [];
    return this;
  }
}

describe('ring memory (issue 19, target 5)', () => {
  it('reuses a block only after its chunks left the ring and no holder holds them; until then a new block is made', () => {
    const mem = new RingMemory({ blockBytes: 256 * KiB });
    const holder = new FixedHolder();
    mem.addHolder(holder);
    // Two 100 KiB chunks per block: seq 0,1 in block A, 2,3 in block B.
    const views = [0, 1, 2, 3].map((seq) => mem.store([bytes(100 * KiB, seq + 1)], 100 * KiB, seq));
    expect(mem.allocated).to.equal(2);
    expect(views[0]!.buffer).to.equal(views[1]!.buffer);
    mem.evictedBefore(2); // A leaves the ring
    holder.from = 1; // a socket still queues chunk 1
    const next = mem.store([bytes(100 * KiB, 9)], 100 * KiB, 4);
    expect(mem.allocated, 'a new block while A is held').to.equal(3);
    expect(mem.reused).to.equal(0);
    expect(next.buffer).to.not.equal(views[0]!.buffer);
    expect(views[1]!.every((b) => b === 2), 'the held chunk is intact').to.equal(true);

    mem.store([bytes(100 * KiB, 9)], 100 * KiB, 5);
    mem.evictedBefore(5); // B leaves too
    holder.from = Infinity; // the socket sent everything
    const reused = mem.store([bytes(100 * KiB, 7)], 100 * KiB, 6);
    expect(mem.reused).to.equal(1);
    expect(reused.buffer, 'A is the oldest spare').to.equal(views[0]!.buffer);
    expect(reused.every((b) => b === 7)).to.equal(true);
  });

  it('a holder that is done and holds nothing is forgotten; one that is done but still flushing pins its block', () => {
    const mem = new RingMemory({ blockBytes: 256 * KiB });
    const flushing = new FixedHolder();
    flushing.isDone = true;
    flushing.from = 0;
    mem.addHolder(flushing);
    for (let seq = 0; seq < 4; seq++) mem.store([bytes(100 * KiB, seq)], 100 * KiB, seq);
    mem.evictedBefore(2);
    mem.store([bytes(100 * KiB, 4)], 100 * KiB, 4);
    expect(mem.reused).to.equal(0);
    flushing.from = Infinity;
    mem.store([bytes(100 * KiB, 5)], 100 * KiB, 5);
    mem.evictedBefore(5);
    mem.store([bytes(100 * KiB, 6)], 100 * KiB, 6);
    expect(mem.reused).to.equal(1);
  });

  it('blocks grow to hold two of the largest chunks; a chunk over half the largest block is a Buffer of its own', () => {
    const mem = new RingMemory({ blockBytes: 256 * KiB });
    mem.store([bytes(10 * KiB, 1)], 10 * KiB, 0);
    const big = mem.store([bytes(300 * KiB, 2)], 300 * KiB, 1);
    expect(big.buffer.byteLength, '300 KiB × 2 → 1 MiB blocks').to.equal(1024 * KiB);
    const parts = [bytes(2 * 1024 * KiB, 3), bytes(1024 * KiB, 4)];
    const huge = mem.store(parts, 3 * 1024 * KiB, 2);
    expect(huge.length).to.equal(3 * 1024 * KiB);
    expect(huge.buffer.byteLength).to.equal(3 * 1024 * KiB);
    expect(huge[0]).to.equal(3);
    expect(huge[huge.length - 1]).to.equal(4);
  });

  it('keeps at most two spare blocks: a ring that shrinks gives the rest back', () => {
    const mem = new RingMemory({ blockBytes: 256 * KiB });
    for (let seq = 0; seq < 20; seq++) mem.store([bytes(100 * KiB, seq)], 100 * KiB, seq);
    expect(mem.reservedBytes).to.equal(10 * 256 * KiB);
    mem.evictedBefore(19);
    expect(mem.reservedBytes, 'the block being filled + 2 spares').to.equal(3 * 256 * KiB);
  });

  it('a viewer whose socket still queues bytes gets exactly what was written while the ring takes in 40× its size', () => {
    const ch = new Channel({ maxBytes: 128 * KiB, maxAgeMs: 60_000, raw: true });
    const sink = new QueueSink();
    const viewer = new Viewer(ch, sink, { maxDrops: 1000, queueBudget: 64 * KiB });
    ch.write(bytes(20 * KiB, 1));
    viewer.start();
    // The viewer's socket takes nothing for a while: its queue passes the budget and it waits.
    for (let i = 0; i < 200; i++) ch.write(bytes(20 * KiB, (i % 250) + 2));
    expect(sink.writableLength).to.be.greaterThan(64 * KiB);
    sink.send();
    for (let i = 0; i < 200; i++) {
      ch.write(bytes(20 * KiB, (i % 250) + 3));
      if (i % 7 === 0) sink.send(2);
    }
    sink.send();
    expect(sink.corrupted, 'writes whose bytes changed before they were sent').to.equal(0);
    expect(sink.sent).to.be.greaterThan(1000 * KiB);
    expect(ch.reservedBytes, 'blocks were reused, not made for every chunk').to.be.lessThan(2 * 1024 * KiB);
  });

  it('any interleaving of reads, socket sends and viewers joining and leaving: no queued write changes before it is sent (property)', () => {
    const runs = 120;
    type Op =
      | { kind: 'read'; size: number }
      | { kind: 'send'; viewer: number; writes: number }
      | { kind: 'join' }
      | { kind: 'leave'; viewer: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('read' as const), size: fc.integer({ min: 1, max: 90 * KiB }) }) },
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('send' as const), viewer: fc.nat(7), writes: fc.integer({ min: 1, max: 6 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('join' as const) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('leave' as const), viewer: fc.nat(7) }) },
    );
    let reused = 0;
    fc.assert(
      fc.property(fc.array(op, { minLength: 20, maxLength: 300 }), (ops) => {
        const ch = new Channel({ maxBytes: 192 * KiB, maxAgeMs: 60_000, raw: true });
        const viewers: Array<{ viewer: Viewer; sink: QueueSink }> = [];
        let fill = 0;
        ch.write(bytes(1000, 0));
        for (const o of ops) {
          if (o.kind === 'read') ch.write(bytes(o.size, ++fill % 256));
          else if (o.kind === 'join' && viewers.length < 8) {
            const sink = new QueueSink();
            const viewer = new Viewer(ch, sink, { maxDrops: 1e9, queueBudget: 48 * KiB });
            viewer.start();
            viewers.push({ viewer, sink });
          } else if (o.kind === 'send') viewers[o.viewer % Math.max(1, viewers.length)]?.sink.send(o.writes);
          else if (o.kind === 'leave') {
            // A viewer that ends flushes what its socket holds (end(), not destroy()).
            const v = viewers[o.viewer % Math.max(1, viewers.length)];
            if (v) v.viewer.end();
          }
        }
        for (const v of viewers) v.sink.send();
        reused += (ch as unknown as { memory: RingMemory }).memory.reused;
        return viewers.every((v) => v.sink.corrupted === 0);
      }),
      { numRuns: runs },
    );
    expect(reused, 'the runs reused blocks (the property is not vacuous)').to.be.greaterThan(0);
    report('ring memory property', `${runs} runs, ${reused} block reuses, no queued write changed`);
  });
});
