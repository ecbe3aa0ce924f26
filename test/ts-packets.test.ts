import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import { Channel } from '../src/streams/live/channel.js';
import { findSync, packetPid, TsPacketizer, TS_PACKET_SIZE } from '../src/streams/mpegts/ts-packets.js';
import { makeLiveTs } from './support/media.js';

const packet = (pid: number, fill = 0): Buffer => {
  const b = Buffer.alloc(TS_PACKET_SIZE, fill);
  b[0] = 0x47;
  b[1] = 0x40 | ((pid >> 8) & 0x1f); // payload_unit_start
  b[2] = pid & 0xff;
  b[3] = 0x10;
  return b;
};

describe('MPEG-TS packetizer', () => {
  it('marks every PAT in one aligned run, without copying', () => {
    const input = Buffer.concat([packet(0x100), packet(0), packet(0x1000), packet(0x100), packet(0)]);
    const segs = new TsPacketizer().push(input);
    expect(segs).to.have.length(1);
    expect(segs[0]!.data.length).to.equal(5 * TS_PACKET_SIZE);
    expect(segs[0]!.pats).to.deep.equal([1, 4]);
    expect(segs[0]!.data.buffer).to.equal(input.buffer); // a view, not a copy
  });

  it('re-syncs after garbage and carries partial packets across pushes', () => {
    const stream = Buffer.concat([Buffer.from('garbage!'), packet(0), packet(0x100), packet(0x101), packet(0x102)]);
    const p = new TsPacketizer();
    const out = [...p.push(stream.subarray(0, 300)), ...p.push(stream.subarray(300, 500)), ...p.push(stream.subarray(500))];
    const all = Buffer.concat(out.map((s) => s.data));
    expect(all.length).to.equal(4 * TS_PACKET_SIZE);
    for (let i = 0; i < all.length; i += TS_PACKET_SIZE) expect(all[i]).to.equal(0x47);
    expect([packetPid(all, 0), packetPid(all, 188), packetPid(all, 376)]).to.deep.equal([0, 0x100, 0x101]);
    expect(p.droppedBytes).to.equal(8);
  });

  it('finds sync only where packets repeat', () => {
    const buf = Buffer.concat([Buffer.from([0x47, 1, 2]), packet(5), packet(6), packet(7)]);
    expect(findSync(buf, 0)).to.equal(3);
  });

  it('marks keyframe GOPs in real ffmpeg output so joins start at PAT before a keyframe', async function () {
    this.timeout(60_000);
    const file = await readFile(await makeLiveTs());
    const p = new TsPacketizer();
    const segs = [];
    for (let off = 0; off < file.length; off += 7 * 1316) segs.push(...p.push(file.subarray(off, off + 7 * 1316)));
    const pats = segs.reduce((n, s) => n + s.pats.length, 0);
    const keyframes = segs.reduce((n, s) => n + s.keyframes.length, 0);
    expect(pats).to.be.greaterThan(5);
    // testsrc2 at 25 fps with -g 25 over several seconds: one keyframe a second.
    expect(keyframes).to.be.greaterThan(2);
    // ffmpeg writes PAT/PMT right before each keyframe: a keyframe follows some PAT closely.
    expect(segs.some((s) => s.keyframes.some((k) => s.pats.some((p) => k > p && k - p < 10)))).to.equal(true);
  });
});

describe('Channel ring', () => {
  const fill = (ch: Channel, n: number, pid = 0x100): void => {
    for (let i = 0; i < n; i++) ch.write(packet(pid));
  };

  it('evicts by bytes but keeps the newest chunk', () => {
    const ch = new Channel({ maxBytes: 10 * TS_PACKET_SIZE, maxAgeMs: 60_000 });
    fill(ch, 30);
    expect(ch.bufferedBytes).to.be.at.most(10 * TS_PACKET_SIZE);
    expect(ch.nextSeq - ch.firstSeq).to.equal(10);
  });

  it('evicts by age', () => {
    let now = 0;
    const ch = new Channel({ maxBytes: 1 << 20, maxAgeMs: 1000, now: () => now });
    fill(ch, 5);
    now = 5000;
    fill(ch, 1);
    expect(ch.nextSeq - ch.firstSeq).to.equal(1);
  });

  it('joins at the newest PAT, preferring one that opens a keyframe GOP', async function () {
    this.timeout(60_000);
    const file = await readFile(await makeLiveTs());
    const ch = new Channel({ maxBytes: 64 << 20, maxAgeMs: 60_000 });
    for (let off = 0; off < file.length; off += 1316 * 5) ch.write(file.subarray(off, off + 1316 * 5));
    const at = ch.joinPoint();
    expect(at.offset % TS_PACKET_SIZE).to.equal(0);
    const from = Buffer.concat([
      ch.chunk(at.seq).subarray(at.offset),
      ...Array.from({ length: ch.nextSeq - at.seq - 1 }, (_, i) => ch.chunk(at.seq + 1 + i)),
    ]);
    expect(from[0]).to.equal(0x47);
    expect(packetPid(from, 0)).to.equal(0);
    // A keyframe follows that PAT before the next one.
    const [seg] = new TsPacketizer().push(from);
    const nextPat = seg!.pats[1] ?? Infinity;
    expect(seg!.keyframes.some((k) => k < nextPat)).to.equal(true);
  });

  it('passes a source that is not MPEG-TS through from byte 0, with its own type (issue 13)', () => {
    const ch = new Channel({ maxBytes: 1 << 20, maxAgeMs: 60_000 });
    ch.sourceContentType = 'audio/aacp';
    ch.write(Buffer.alloc(70_000, 0x11));
    ch.write(Buffer.from('more'));
    expect(ch.nextSeq).to.equal(2);
    expect(ch.chunk(0).length).to.equal(70_000);
    expect(ch.chunk(1).toString()).to.equal('more');
    expect(ch.isRaw).to.equal(true);
    expect(ch.contentType).to.equal('audio/aacp');
  });
});
