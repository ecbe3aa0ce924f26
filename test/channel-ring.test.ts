// The ring is sized by time (CHANNEL_BUFFER_SECONDS) measured from the byte rate it observes,
// with the newest keyframe GOP as a floor and CHANNEL_BUFFER_BYTES as a ceiling (issue 19).
// Synthetic MPEG-TS on a fake clock: PAT/PMT every write, a keyframe (random_access_indicator)
// every GOP.
import { expect } from 'chai';
import { Channel } from '../src/streams/live/channel.js';
import { Viewer } from '../src/streams/live/viewer.js';
import { packetPid, TS_PACKET_SIZE } from '../src/streams/mpegts/ts-packets.js';

const PMT_PID = 0x1000;
const VIDEO_PID = 0x100;

const header = (pid: number, start: boolean, afc = 1): Buffer => {
  const b = Buffer.alloc(TS_PACKET_SIZE, 0xff);
  b[0] = 0x47;
  b[1] = (start ? 0x40 : 0) | ((pid >> 8) & 0x1f);
  b[2] = pid & 0xff;
  b[3] = afc << 4;
  return b;
};

/** A PAT naming one programme whose PMT is on PMT_PID. */
const pat = (): Buffer => {
  const b = header(0, true);
  Buffer.from([0, 0x00, 0xb0, 13, 0, 1, 0xc1, 0, 0, 0, 1, 0xe0 | (PMT_PID >> 8), PMT_PID & 0xff, 0, 0, 0, 0]).copy(b, 4);
  return b;
};

/** A PMT with one H.264 stream on VIDEO_PID. */
const pmt = (): Buffer => {
  const b = header(PMT_PID, true);
  Buffer.from([
    0, 0x02, 0xb0, 18, 0, 1, 0xc1, 0, 0, 0xe0 | (VIDEO_PID >> 8), VIDEO_PID & 0xff, 0xf0, 0,
    0x1b, 0xe0 | (VIDEO_PID >> 8), VIDEO_PID & 0xff, 0xf0, 0, 0, 0, 0, 0,
  ]).copy(b, 4);
  return b;
};

/** The first packet of a keyframe: adaptation field with random_access_indicator set. */
const keyframe = (): Buffer => {
  const b = header(VIDEO_PID, true, 3);
  b[4] = 1;
  b[5] = 0x40;
  return b;
};

const isKeyframePacket = (buf: Buffer, off: number): boolean =>
  packetPid(buf, off) === VIDEO_PID && ((buf[off + 3]! >> 4) & 3) === 3 && (buf[off + 5]! & 0x40) !== 0;

interface Feed {
  ch: Channel;
  /** Writes one read of `packets` packets at the fake time; a keyframe opens it when `key`. */
  write(packets: number, key: boolean): void;
}

const feed = (ch: Channel): Feed => ({
  ch,
  write(packets, key) {
    const parts = [pat(), pmt()];
    if (key) parts.push(keyframe());
    while (parts.length < packets) parts.push(header(VIDEO_PID, false));
    ch.write(Buffer.concat(parts));
  },
});

/** The bytes from the channel's join point on. */
const fromJoinPoint = (ch: Channel): Buffer => {
  const at = ch.joinPoint();
  const rest = Array.from({ length: ch.nextSeq - at.seq - 1 }, (_, i) => ch.chunk(at.seq + 1 + i));
  return Buffer.concat([ch.chunk(at.seq).subarray(at.offset), ...rest]);
};

describe('Channel ring sized by bitrate × time (issue 19)', () => {
  const TICK_MS = 40; // 25 reads a second

  it('holds about the same seconds at 1 and 8 Mbit/s, so its bytes follow the bitrate', () => {
    let now = 0;
    const seconds = 4;
    const opts = { maxBytes: 64 << 20, maxAgeMs: seconds * 1000, now: () => now };
    // 27 and 213 packets per 40 ms: 1.015 and 8.01 Mbit/s; a keyframe every second.
    const slow = { f: feed(new Channel(opts)), packets: 27 };
    const fast = { f: feed(new Channel(opts)), packets: 213 };
    for (let tick = 0; tick < 30 * 25; tick++, now += TICK_MS) {
      for (const c of [slow, fast]) {
        c.f.write(c.packets, tick % 25 === 0);
        if (tick < 10 * 25) continue;
        const rate = (c.packets * TS_PACKET_SIZE * 1000) / TICK_MS;
        // Bounded by rate × seconds (plus the one read that crossed it), whatever the bitrate.
        expect(c.f.ch.bufferedBytes, `${c.packets} packets a read at ${now} ms`).to.be.at.most(rate * seconds + c.packets * TS_PACKET_SIZE);
      }
    }
    const held = (c: typeof slow): number => c.f.ch.bufferedBytes / ((c.packets * TS_PACKET_SIZE * 1000) / TICK_MS);
    // Seconds held: the same for both (within a read or two), close to CHANNEL_BUFFER_SECONDS.
    expect(held(slow)).to.be.within(seconds - 0.5, seconds + 0.1);
    expect(held(fast)).to.be.within(seconds - 0.5, seconds + 0.1);
    expect(Math.abs(held(slow) - held(fast))).to.be.below(0.1);
    // Bytes: eight times apart, as the bitrates are (a fixed byte budget would hold the same).
    expect(fast.f.ch.bufferedBytes / slow.f.ch.bufferedBytes).to.be.within(7, 9);
    expect(slow.f.ch.byteRate).to.be.within(125_000, 130_000);
    expect(fast.f.ch.byteRate).to.be.within(995_000, 1_005_000);
  });

  it('a source that arrives in bursts holds rate × seconds, not every burst within the seconds', () => {
    let now = 0;
    const ch = new Channel({ maxBytes: 64 << 20, maxAgeMs: 4000, now: () => now });
    const f = feed(ch);
    // Segment-like delivery: 2 s of a 1 Mbit/s source arrive at once every 2 s (50 reads).
    const perRead = 27;
    const rate = 25 * perRead * TS_PACKET_SIZE; // bytes per second of media
    for (let burst = 0; burst < 12; burst++, now += 2000) {
      for (let i = 0; i < 50; i++) f.write(perRead, i % 25 === 0);
      if (burst < 5) continue;
      // By arrival age alone three bursts (6 s) are younger than 4 s right after a burst.
      expect(ch.bufferedBytes, `after burst ${burst}`).to.be.at.most(4 * rate * 1.2);
      expect(ch.bufferedBytes).to.be.at.least(3 * rate);
    }
  });

  it('keeps the newest keyframe GOP when the GOP is longer than the seconds kept: joins still start at a PAT before a keyframe', () => {
    let now = 0;
    const ch = new Channel({ maxBytes: 64 << 20, maxAgeMs: 2000, now: () => now });
    const f = feed(ch);
    const perRead = 27;
    // A keyframe every 8 s (200 reads), 2 s kept.
    for (let tick = 0; tick < 40 * 25; tick++, now += TICK_MS) {
      f.write(perRead, tick % 200 === 0);
      const from = fromJoinPoint(ch);
      expect(packetPid(from, 0), `join at ${now} ms`).to.equal(0); // a PAT
      // PAT, PMT, then the keyframe: the GOP's start was not evicted.
      expect(isKeyframePacket(from, 2 * TS_PACKET_SIZE), `keyframe after the join PAT at ${now} ms`).to.equal(true);
      // …and no more than that GOP beyond the seconds kept.
      const gopBytes = 200 * perRead * TS_PACKET_SIZE;
      expect(ch.bufferedBytes).to.be.at.most(gopBytes + perRead * TS_PACKET_SIZE);
    }
  });

  it('CHANNEL_BUFFER_BYTES stays the ceiling, even over the GOP floor', () => {
    let now = 0;
    const maxBytes = 100 * 1024;
    const ch = new Channel({ maxBytes, maxAgeMs: 4000, now: () => now });
    const f = feed(ch);
    for (let tick = 0; tick < 20 * 25; tick++, now += TICK_MS) {
      f.write(213, tick % 250 === 0); // 8 Mbit/s, a keyframe every 10 s
      expect(ch.bufferedBytes).to.be.at.most(maxBytes);
    }
    expect(ch.nextSeq - ch.firstSeq).to.be.at.least(2);
  });

  it('does not pin a join point older than 20 s (a silent source keeps no stale GOP)', () => {
    let now = 0;
    const ch = new Channel({ maxBytes: 64 << 20, maxAgeMs: 2000, now: () => now });
    const f = feed(ch);
    f.write(27, true);
    for (let tick = 1; tick < 30 * 25; tick++, now += TICK_MS) f.write(27, false); // no keyframe after the first
    // Only the last 2 s remain; the join point is the newest PAT.
    expect(ch.bufferedBytes).to.be.at.most(2 * 25 * 27 * TS_PACKET_SIZE + 27 * TS_PACKET_SIZE);
    expect(isKeyframePacket(fromJoinPoint(ch), 2 * TS_PACKET_SIZE)).to.equal(false);
  });
});

describe('Channel coalescing (CHANNEL_COALESCE_MS, issue 19)', () => {
  /** A viewer's socket that records each write. */
  const sink = () => {
    const writes: Buffer[] = [];
    return {
      writes,
      destroyed: false,
      writableLength: 0,
      write(chunk: Buffer) { writes.push(chunk); return true; },
      once() { return undefined; },
      end() { return undefined; },
      destroy() { return undefined; },
    };
  };
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  it('passes the first read on at once, then joins the reads of each window into one write per viewer', async () => {
    const ch = new Channel({ maxBytes: 64 << 20, maxAgeMs: 60_000, coalesceMs: 40 });
    const f = feed(ch);
    const sent: Buffer[] = [];
    f.write(27, true);
    sent.push(ch.chunk(ch.firstSeq));
    const s = sink();
    new Viewer(ch, s, { maxDrops: 3, queueBudget: 1 << 20 }).start({ seq: ch.firstSeq, offset: 0 });
    expect(s.writes).to.have.length(1); // the first bytes are never held
    for (let i = 0; i < 9; i++) f.write(27, i === 4);
    expect(s.writes).to.have.length(1); // held for the window
    await sleep(80);
    expect(s.writes).to.have.length(2); // nine reads, one write
    expect(s.writes[1]!.length).to.equal(9 * 27 * TS_PACKET_SIZE);
    // The join point found inside the joined chunk is the keyframe's PAT (read 5 of 9).
    const jp = ch.joinPoint();
    expect(jp.seq).to.equal(ch.nextSeq - 1);
    expect(jp.offset).to.equal(4 * 27 * TS_PACKET_SIZE);
    expect(isKeyframePacket(ch.chunk(jp.seq), jp.offset + 2 * TS_PACKET_SIZE)).to.equal(true);
    expect(sent[0]!.equals(s.writes[0]!)).to.equal(true);
  });

  it('flushes at once on end() and when the held bytes reach coalesceBytes', () => {
    const ch = new Channel({ maxBytes: 64 << 20, maxAgeMs: 60_000, coalesceMs: 10_000, coalesceBytes: 3 * 27 * TS_PACKET_SIZE });
    const f = feed(ch);
    const s = sink();
    f.write(27, true);
    new Viewer(ch, s, { maxDrops: 3, queueBudget: 1 << 20 }).start({ seq: ch.firstSeq, offset: 0 });
    f.write(27, false);
    f.write(27, false);
    expect(s.writes).to.have.length(1);
    f.write(27, false); // the third held read reaches coalesceBytes
    expect(s.writes).to.have.length(2);
    f.write(27, false);
    ch.end();
    expect(s.writes).to.have.length(3); // what was held is passed on before the end
    expect(Buffer.concat(s.writes).length).to.equal(5 * 27 * TS_PACKET_SIZE);
  });
});

describe('Channel coalescing and the lease (issue 18)', () => {
  it('dropPending(): bytes held for coalescing are never passed on (the session calls it when its lease is lost)', async () => {
    const ch = new Channel({ maxBytes: 64 << 20, maxAgeMs: 60_000, coalesceMs: 30 });
    const f = feed(ch);
    f.write(27, true);
    const held = ch.nextSeq;
    f.write(27, false); // admitted while leased, then held
    ch.dropPending(); // the lease is lost
    await new Promise((r) => setTimeout(r, 60)); // the flush timer would have fired
    ch.end();
    expect(ch.nextSeq).to.equal(held);
    f.write(27, false);
    expect(ch.nextSeq, 'ended').to.equal(held);
  });

  it('a flush that finds the lease gone passes nothing on (a flush timer run after a freeze, before the deadline timer)', () => {
    const ch = new Channel({ maxBytes: 64 << 20, maxAgeMs: 60_000, coalesceMs: 10_000 });
    let leased = true;
    ch.admit = () => leased;
    const f = feed(ch);
    f.write(27, true);
    const held = ch.nextSeq;
    f.write(27, false); // admitted while leased, then held
    leased = false;
    ch.end(); // flushes
    expect(ch.nextSeq).to.equal(held);
  });
});

describe('Channel media clock (admission control, issue 19)', () => {
  /** A video packet whose adaptation field carries PCR base `pcr` (90 kHz). */
  const pcrPacket = (pcr: number): Buffer => {
    const b = header(VIDEO_PID, false, 3);
    b[4] = 7;
    b[5] = 0x10; // PCR_flag
    b.writeUInt32BE(Math.floor(pcr / 2), 6);
    b[10] = ((pcr % 2) << 7) | 0x7e;
    b[11] = 0;
    return b;
  };

  it('reads the PCR of the source: ~1 when it arrives on time, ~0.8 when read late, null without a PCR', () => {
    for (const speed of [1, 0.8]) {
      let now = 0;
      const ch = new Channel({ maxBytes: 64 << 20, maxAgeMs: 60_000, now: () => now });
      // A read every 40 ms of wall time carrying `speed` × 40 ms of media.
      for (let i = 0; i < 100; i++, now += 40) ch.write(Buffer.concat([pat(), pmt(), pcrPacket(Math.round(i * 40 * speed * 90))]));
      expect(ch.clockRatio).to.be.closeTo(speed, 0.03);
    }
    let now = 0;
    const plain = new Channel({ maxBytes: 64 << 20, maxAgeMs: 60_000, now: () => now });
    for (let i = 0; i < 100; i++, now += 40) plain.write(Buffer.concat([pat(), pmt(), header(VIDEO_PID, false)]));
    expect(plain.clockRatio).to.equal(null);
  });
});

describe('Viewer lag behind the live edge (admission, issue 19 target 6)', () => {
  it('a socket that drains slower than the stream grows behindMs though it never waits long for drain; one that keeps up stays at 0', () => {
    let now = 0;
    const ch = new Channel({ maxBytes: 64 << 20, maxAgeMs: 60_000, now: () => now });
    const f = feed(ch);
    f.write(27, true);
    // A socket that takes one read's worth per 'drain', and drains on 3 of every 4 reads.
    let queued = 0;
    let drain: (() => void) | null = null;
    const slow = {
      destroyed: false,
      get writableLength() { return queued; },
      write(chunk: Buffer) { queued += chunk.length; return false; },
      once(_e: 'drain', l: () => void) { drain = l; return undefined; },
      end() { return undefined; },
      destroy() { return undefined; },
    };
    const fast = { destroyed: false, writableLength: 0, write: () => true, once: () => undefined, end: () => undefined, destroy: () => undefined };
    const lagging = new Viewer(ch, slow, { maxDrops: 3, queueBudget: 1000, now: () => now });
    const keeping = new Viewer(ch, fast, { maxDrops: 3, queueBudget: 1000, now: () => now });
    lagging.start();
    keeping.start();
    let longestWait = 0;
    for (let tick = 1; tick <= 100; tick++) {
      now += 40;
      f.write(27, false);
      if (lagging.waitingSince > 0) longestWait = Math.max(longestWait, now - lagging.waitingSince);
      // Never stuck for long, but 3 reads sent for every 4 that arrive: further behind each time.
      if (tick % 4 !== 0 && drain) {
        queued = 0;
        const d = drain as () => void;
        drain = null;
        d();
      }
    }
    expect(longestWait, 'never refused for a LAG_MS second straight').to.be.below(1000);
    expect(lagging.behindMs(now)).to.be.at.least(900);
    expect(keeping.behindMs(now)).to.equal(0);
  });
});
