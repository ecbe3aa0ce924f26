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
  // 60 KiB chunks: blocks of 256 KiB (four of them), seq 0–3 in the first, 4–7 in the second.
  const C = 60 * KiB;
  const fill = (mem: RingMemory, from: number, to: number): Buffer[] =>
    Array.from({ length: to - from }, (_, i) => mem.store([bytes(C, (from + i) % 256)], C, from + i));

  it('reuses a block only after its chunks left the ring and no holder holds them; until then a new block is made', () => {
    const mem = new RingMemory();
    const holder = new FixedHolder();
    mem.addHolder(holder);
    const views = fill(mem, 0, 8);
    expect(mem.allocated).to.equal(2);
    expect(views[0]!.buffer.byteLength).to.equal(256 * KiB);
    expect(views[3]!.buffer).to.equal(views[0]!.buffer);
    expect(views[4]!.buffer).to.not.equal(views[0]!.buffer);
    mem.evictedBefore(4); // the first block leaves the ring
    holder.from = 3; // a socket still queues chunk 3
    const next = fill(mem, 8, 9)[0]!;
    expect(mem.allocated, 'a new block while the first is held').to.equal(3);
    expect(mem.reused).to.equal(0);
    expect(next.buffer).to.not.equal(views[0]!.buffer);
    expect(views[3]!.every((b) => b === 3), 'the held chunk is intact').to.equal(true);

    fill(mem, 9, 12);
    mem.evictedBefore(12); // the second block leaves too
    holder.from = Infinity; // the socket sent everything
    const reused = fill(mem, 12, 13)[0]!;
    expect(mem.reused).to.equal(1);
    expect(reused.buffer, 'the first block is the oldest spare').to.equal(views[0]!.buffer);
    expect(reused.every((b) => b === 12)).to.equal(true);
  });

  it('a holder that is done and holds nothing is forgotten; one that is done but still flushing pins its block', () => {
    const mem = new RingMemory();
    const flushing = new FixedHolder();
    flushing.isDone = true;
    flushing.from = 0;
    mem.addHolder(flushing);
    fill(mem, 0, 8);
    mem.evictedBefore(4);
    fill(mem, 8, 9);
    expect(mem.reused).to.equal(0);
    flushing.from = Infinity;
    fill(mem, 9, 12);
    mem.evictedBefore(12);
    fill(mem, 12, 13);
    expect(mem.reused).to.equal(1);
  });

  it('sizes blocks for four typical chunks: larger at once after a burst, smaller step by step as it fades; a chunk over 2 MiB is a Buffer of its own', () => {
    const mem = new RingMemory();
    expect(mem.store([bytes(10 * KiB, 1)], 10 * KiB, 0).buffer.byteLength, '4 × 10 KiB → the 64 KiB minimum').to.equal(64 * KiB);
    const burst = mem.store([bytes(300 * KiB, 2)], 300 * KiB, 1);
    expect(burst.buffer.byteLength, '4 × 300 KiB → 2 MiB').to.equal(2048 * KiB);
    // 20 KiB chunks after it: the burst fades by 1/64 per chunk, the sizes only go down.
    const sizes: number[] = [];
    for (let seq = 2; seq < 400; seq++) {
      const view = mem.store([bytes(20 * KiB, 3)], 20 * KiB, seq);
      if (sizes[sizes.length - 1] !== view.buffer.byteLength || seq === 2) sizes.push(view.buffer.byteLength);
    }
    expect(sizes.slice(1).every((size, i) => size <= sizes[i]!), `sizes ${sizes.join(', ')}`).to.equal(true);
    expect(sizes[sizes.length - 1], '4 × 20 KiB → 128 KiB').to.equal(128 * KiB);
    const parts = [bytes(2 * 1024 * KiB, 5), bytes(1024 * KiB, 6)];
    const huge = mem.store(parts, 3 * 1024 * KiB, 400);
    expect(huge.length).to.equal(3 * 1024 * KiB);
    expect(huge.buffer.byteLength).to.equal(3 * 1024 * KiB);
    expect(huge[0]).to.equal(5);
    expect(huge[huge.length - 1]).to.equal(6);
  });

  it('keeps at most two spare blocks: a ring that shrinks gives the rest back', () => {
    const mem = new RingMemory();
    fill(mem, 0, 40);
    expect(mem.reservedBytes).to.equal(10 * 256 * KiB);
    mem.evictedBefore(39);
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

  it('a socket queue that spans two blocks pins the older one: the oldest chunk queued counts, not the newest', () => {
    // 60 KiB chunks (four per 256 KiB block), a ring of five chunks.
    const ch = new Channel({ maxBytes: 300 * KiB, maxAgeMs: 60_000, raw: true });
    for (let seq = 0; seq < 3; seq++) ch.write(bytes(C, seq));
    const sink = new QueueSink();
    const viewer = new Viewer(ch, sink, { maxDrops: 1000, queueBudget: 64 * KiB });
    viewer.start();
    sink.send();
    ch.write(bytes(C, 3)); // the last chunk of the first block: queued
    ch.write(bytes(C, 4)); // the first of the second block: queued too, then the viewer waits
    expect(sink.writableLength).to.equal(2 * C);
    // The first block leaves the ring at chunk 8; a block is taken again at chunk 12.
    for (let seq = 5; seq < 16; seq++) ch.write(bytes(C, seq));
    sink.send();
    expect(sink.corrupted, 'queued chunks overwritten').to.equal(0);
  });

  it('a player that reads at playback speed with a backlog that never empties lets go of what it was sent: blocks are reused', () => {
    const ch = new Channel({ maxBytes: 300 * KiB, maxAgeMs: 60_000, raw: true });
    ch.write(bytes(C, 0));
    const sink = new QueueSink();
    const viewer = new Viewer(ch, sink, { maxDrops: 1000, queueBudget: 256 * KiB });
    viewer.start();
    for (let seq = 1; seq < 200; seq++) {
      ch.write(bytes(C, seq % 256));
      sink.send(1); // one write out per write in: the queue keeps its backlog, never empty
      expect(sink.writableLength).to.be.greaterThan(0);
    }
    sink.send();
    const memory = (ch as unknown as { memory: RingMemory }).memory;
    expect(sink.corrupted).to.equal(0);
    expect(memory.reused, `${memory.allocated} blocks made`).to.be.greaterThan(40);
  });

  it('finished holders are forgotten even when the ring never takes a block (chunks over 2 MiB, keep-alives)', () => {
    const mem = new RingMemory();
    const gone = Array.from({ length: 10 }, () => Object.assign(new FixedHolder(), { isDone: true }));
    const flushing = Object.assign(new FixedHolder(), { isDone: true, from: 5 });
    for (const h of [...gone, flushing]) mem.addHolder(h);
    for (let i = 0; i < 64; i++) mem.evictedBefore(i);
    expect(mem.holderCount, 'only the one still flushing').to.equal(1);
  });

  it('any interleaving of reads, socket sends and viewers joining and leaving: no queued write changes before it is sent (property)', () => {
    const runs = 120;
    type Op =
      | { kind: 'read'; size: number }
      | { kind: 'send'; viewer: number; writes: number }
      | { kind: 'sendAll' }
      | { kind: 'join' }
      | { kind: 'leave'; viewer: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 6, arbitrary: fc.record({ kind: fc.constant('read' as const), size: fc.integer({ min: 1, max: 16 * KiB }) }) },
      { weight: 4, arbitrary: fc.record({ kind: fc.constant('send' as const), viewer: fc.nat(7), writes: fc.integer({ min: 1, max: 6 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('sendAll' as const) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('join' as const) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('leave' as const), viewer: fc.nat(7) }) },
    );
    let reused = 0;
    fc.assert(
      fc.property(fc.array(op, { minLength: 100, maxLength: 400, size: 'max' }), (ops) => {
        const ch = new Channel({ maxBytes: 96 * KiB, maxAgeMs: 60_000, raw: true });
        const viewers: Array<{ viewer: Viewer; sink: QueueSink }> = [];
        let fill = 0;
        ch.write(bytes(1000, 0));
        for (const o of ops) {
          if (o.kind === 'read') ch.write(bytes(o.size, ++fill % 256));
          else if (o.kind === 'join' && viewers.length < 6) {
            const sink = new QueueSink();
            const viewer = new Viewer(ch, sink, { maxDrops: 1e9, queueBudget: 24 * KiB });
            viewer.start();
            viewers.push({ viewer, sink });
          } else if (o.kind === 'sendAll') for (const v of viewers) v.sink.send();
          else if (o.kind === 'send') viewers[o.viewer % Math.max(1, viewers.length)]?.sink.send(o.writes);
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
