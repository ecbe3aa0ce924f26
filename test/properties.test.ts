// Issue 13: property-based tests (fast-check) for the edges that take untrusted bytes.
// Each property prints how many cases it ran (`measured: … runs`).
import { expect } from 'chai';
import fc from 'fast-check';
import { readFile } from 'node:fs/promises';
import request from 'supertest';
import { AppError } from '../src/errors.js';
import { CPU_VARIABLES } from '../src/ffmpeg/hw-accel.js';
import { CLIENT_ID } from '../src/http/request-values.js';
import { DENIED_FILTERS, DENIED_OPTIONS } from '../src/render/allow-list.js';
import { renderWith } from '../src/render/render-task.js';
import { isFlag } from '../src/render/template.js';
import { Channel } from '../src/streams/live/channel.js';
import { TsPacketizer } from '../src/streams/mpegts/ts-packets.js';
import { makeLiveTs } from './support/media.js';
import { testApp } from './support/proxy.js';
import { report } from './support/report.js';

const RUNS = { validation: 300, packetizer: 300, channel: 150, template: 1000 };

/** Cuts `data` at the given (sorted, deduplicated) offsets. */
function split(data: Buffer, cuts: number[]): Buffer[] {
  const at = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let prev = 0;
  for (const c of [...at, data.length]) {
    if (c > prev) parts.push(data.subarray(prev, c));
    prev = c;
  }
  return parts;
}

/** What a packetizer makes of a byte stream: the packets, and PATs/keyframes as absolute packet numbers. */
function packetize(parts: Buffer[]): { bytes: Buffer; pats: number[]; keyframes: number[]; dropped: number } {
  const p = new TsPacketizer();
  const out: Buffer[] = [];
  const pats: number[] = [];
  const keyframes: number[] = [];
  let packets = 0;
  for (const part of parts) {
    for (const seg of p.push(part)) {
      out.push(Buffer.from(seg.data));
      pats.push(...seg.pats.map((i) => packets + i));
      keyframes.push(...seg.keyframes.map((i) => packets + i));
      packets += seg.data.length / 188;
    }
  }
  return { bytes: Buffer.concat(out), pats, keyframes, dropped: p.droppedBytes };
}

describe('property tests (issue 13)', function () {
  this.timeout(120_000);
  let ts: Buffer;

  before(async () => {
    const file = await makeLiveTs({ seconds: 2 });
    ts = (await readFile(file)).subarray(0, 188 * 400);
  });

  it(`request validation: no client_id, username, stream id or path yields a 5xx or an unchecked value downstream (${RUNS.validation} runs each)`, async () => {
    const t = testApp();
    try {
      const created = await request(t.app).post('/streams').send({ url: 'http://127.0.0.1:9/live/p.ts' });
      const id = created.body.stream_id as string;
      const text = fc.oneof(fc.string(), fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }), fc.constantFrom('%0A', '%', '%E0%A4%A', '\r\n', '../..'));
      let runs = 0;
      await fc.assert(fc.asyncProperty(text, text, async (clientId, username) => {
        runs++;
        const res = await request(t.app).head(`/stream/${id}`).query({ client_id: clientId, username });
        expect(res.status, JSON.stringify({ clientId, username })).to.be.oneOf([200, 400, 422]);
        if (res.status === 200 && clientId !== '') {
          // Whatever reached the header (and the Redis key) passed the edge rule.
          expect(CLIENT_ID.re.test(String(res.headers['x-client-id']))).to.equal(true);
          expect(res.headers['x-client-id']).to.equal(clientId);
        }
        expect(await t.coordinator.listClients()).to.have.length(0);
      }), { numRuns: RUNS.validation });
      let pathRuns = 0;
      await fc.assert(fc.asyncProperty(fc.string({ unit: 'binary', minLength: 1 }), fc.constantFrom('get', 'delete', 'post'), async (raw, method) => {
        pathRuns++;
        const seg = encodeURIComponent(raw).replace(/%25/g, '%'); // may leave bad percent-encoding in
        const route = method === 'post' ? `/streams/${seg}/failover` : `/streams/${seg}`;
        const res = await request(t.app)[method](route);
        expect(res.status, route).to.be.within(400, 499);
        expect(res.type).to.equal('application/json');
      }), { numRuns: RUNS.validation });
      report('property: request validation (client_id × username) runs', runs);
      report('property: stream id path parameter runs', pathRuns);
    } finally {
      await t.close();
    }
  });

  it(`TS packetizer: any byte stream, any read split → the same packets, PATs and keyframes (${RUNS.packetizer} runs)`, () => {
    const piece = fc.oneof(
      fc.record({ from: fc.nat(399), n: fc.integer({ min: 1, max: 60 }) }).map(({ from, n }) => ts.subarray(from * 188, Math.min(400, from + n) * 188)),
      fc.uint8Array({ minLength: 1, maxLength: 700 }).map((a) => Buffer.from(a)),
      fc.integer({ min: 1, max: 400 }).map((n) => { const b = Buffer.alloc(n, 0x11); b[0] = 0x47; if (n > 188) b[188] = 0x47; return b; }),
    );
    let runs = 0;
    fc.assert(fc.property(fc.array(piece, { minLength: 1, maxLength: 12 }), fc.array(fc.nat(200_000), { maxLength: 40 }), (pieces, cuts) => {
      runs++;
      const data = Buffer.concat(pieces);
      const whole = packetize([data]);
      const parts = packetize(split(data, cuts));
      expect(parts.bytes.equals(whole.bytes)).to.equal(true);
      expect(parts.pats).to.deep.equal(whole.pats);
      expect(parts.keyframes).to.deep.equal(whole.keyframes);
      expect(parts.dropped).to.equal(whole.dropped);
      for (let i = 0; i < whole.bytes.length; i += 188) expect(whole.bytes[i]).to.equal(0x47);
    }), { numRuns: RUNS.packetizer });
    report('property: TS packetizer split-invariance runs', runs);
  });

  it(`channel: any byte stream, read split and coalescing → the same bytes, the same join point, the same TS/raw decision, join points on PATs (${RUNS.channel} runs)`, () => {
    const body = fc.oneof(
      fc.record({ junk: fc.uint8Array({ maxLength: 150 }), n: fc.integer({ min: 6, max: 300 }) }).map(({ junk, n }) => Buffer.concat([Buffer.from(junk), ts.subarray(0, n * 188)])),
      fc.uint8Array({ minLength: 1, maxLength: 5000 }).map((a) => Buffer.from(a)),
    );
    let runs = 0;
    fc.assert(fc.property(body, fc.array(fc.nat(100_000), { maxLength: 30 }), (data, cuts) => {
      runs++;
      const feed = (parts: Buffer[], coalesceMs = 0): Channel => {
        // coalesceMs > 0: the reads after the first wait in one pending chunk, flushed by end().
        const ch = new Channel({ maxBytes: 1 << 24, maxAgeMs: 3_600_000, coalesceMs });
        for (const p of parts) ch.write(p);
        ch.end();
        return ch;
      };
      const whole = feed([data]);
      const parts = feed(split(data, cuts));
      const joined = feed(split(data, cuts), 50);
      const bytes = (ch: Channel): Buffer => Buffer.concat(Array.from({ length: ch.nextSeq - ch.firstSeq }, (_, i) => ch.chunk(ch.firstSeq + i)));
      /** The join point as a byte offset into everything the channel holds. */
      const joinAt = (ch: Channel): number => {
        const jp = ch.joinPoint();
        let at = jp.offset;
        for (let s = ch.firstSeq; s < jp.seq; s++) at += ch.chunk(s).length;
        return at;
      };
      expect(parts.isRaw).to.equal(whole.isRaw);
      expect(joined.isRaw).to.equal(whole.isRaw);
      expect(bytes(parts).equals(bytes(whole))).to.equal(true);
      expect(bytes(joined).equals(bytes(whole))).to.equal(true);
      if (!whole.isRaw && whole.nextSeq > 0) expect(joinAt(joined)).to.equal(joinAt(parts));
      for (const ch of [parts, joined]) {
        if (ch.isRaw || ch.nextSeq === 0 || !ch.program) continue;
        // A join point is a PAT (PID 0), not just any packet start.
        const jp = ch.joinPoint();
        const pkt = ch.chunk(jp.seq).subarray(jp.offset);
        if (jp.offset > 0 || pkt[0] === 0x47) expect(((pkt[1]! & 0x1f) << 8) | pkt[2]!).to.equal(0);
      }
      if (whole.isRaw) expect(bytes(whole).equals(data)).to.equal(true); // raw: from byte 0, nothing lost
      if (!parts.isRaw && parts.nextSeq > 0) {
        const jp = parts.joinPoint();
        expect(parts.chunk(jp.seq)[jp.offset]).to.equal(0x47);
      }
    }), { numRuns: RUNS.channel });
    report('property: channel split-invariance runs', runs);
  });

  it(`templates: no template renders an argv that reads or writes outside the input and the allowed output (${RUNS.template} runs)`, () => {
    const HLS_DIR = '/tmp/m3u-proxy-hls/prop';
    const INPUT = 'http://127.0.0.1:9/live/u/p/1.ts';
    const words = fc.constantFrom(
      '-i', '{input_url}', '{output_args}', '-f', 'mpegts', 'hls', 'lavfi', 'concat', 'pipe:1', 'pipe:2', '-', '-y',
      '/etc/passwd', '/tmp/out.ts', `${HLS_DIR}/x.m3u8`, `${HLS_DIR}/../evil.m3u8`, 'file:/etc/passwd', 'out.mp4',
      '-c:v', 'libx264', '-c', 'copy', '-vf', '-af', '-filter_complex', '-map', '0', '-metadata', 'title=x',
      'scale=1:1', 'deshake=filename=/tmp/x', "deshake='filename=/tmp/x'", 'movie=/etc/passwd', 'mo\\vie=x',
      "subtitles='/x.srt'", 'lut3d=/x.cube', 'sendcmd=f=/tmp/c', 'drawtext=textfile=/etc/passwd', 'zmq',
      '-x264-params', 'stats=/tmp/s', '-passlogfile', '-pass', '1', '-attach', '-dump_attachment:t', '-vstats_file',
      '-protocol_whitelist', 'file', '-hls_segment_filename', `${HLS_DIR}/s%d.ts`, '/tmp/s%d.ts', '-tls_verify', '0',
      '{x|/etc/shadow}', '"a b"', "'c d'", '\\', '{{', '}}', '-filter_script', '-report', '-progress', 'tcp://1.2.3.4:9',
    );
    const option = fc.constantFrom('-c:v', '-c', '-vf', '-af', '-filter_complex', '-metadata', '-x264-params', '-map', '-b:v',
      '-hls_time', '-hls_segment_filename', '-passlogfile', '-attach', '-protocol_whitelist', '-f', '-y', '-sn', '-preset');
    const value = fc.oneof(words, fc.constantFrom('scale=-2:720,format=yuv420p', 'yadif,fps=25', 'aresample=async=1', 'veryfast', '2M'));
    const skeleton = fc.array(fc.tuple(option, value), { maxLength: 6 })
      .map((pairs) => `-i {input_url} ${pairs.map(([o, v]) => `${o} ${v}`).join(' ')} {output_args}`);
    const template = fc.oneof(skeleton, fc.array(words, { minLength: 1, maxLength: 14 }).map((w) => `-${w.join(' ')}`.replace(/^--/, '-')));
    let runs = 0;
    let accepted = 0;
    fc.assert(fc.property(template, fc.dictionary(fc.constantFrom('x', 'crf', 'y'), fc.string({ maxLength: 20 })), (tpl, variables) => {
      runs++;
      let argv: string[];
      try {
        argv = renderWith({ profiles: [], problems: [] }, {
          profilesDir: '', profile: null, template: tpl, variables, inputUrl: INPUT, hlsDir: HLS_DIR, hw: CPU_VARIABLES,
        }).argv;
      } catch (err) {
        expect(err, tpl).to.be.instanceOf(AppError);
        expect((err as AppError).status).to.equal(400);
        return;
      }
      accepted++;
      // One input, the stream URL (a later "-i" can only be another option's value).
      expect(argv.filter((t) => t === INPUT), tpl).to.have.length(1);
      expect(argv[argv.indexOf('-i') + 1], tpl).to.equal(INPUT);
      const out = argv[argv.length - 1]!;
      expect(out === 'pipe:1' || (out.startsWith(`${HLS_DIR}/`) && !out.includes('..')), `${tpl} → ${out}`).to.equal(true);
      // Walk the argv as FFmpeg does: an option takes the next token as its value unless it is a flag.
      for (let i = 0; i < argv.length - 1; i++) {
        const t = argv[i]!;
        if (!t.startsWith('-') || t === '-') continue;
        const base = t.slice(1).split(':')[0]!;
        expect(DENIED_OPTIONS.has(base), `${tpl}: ${t}`).to.equal(false);
        if (isFlag(base)) continue;
        const value = argv[++i] ?? '';
        if (value === INPUT) continue;
        expect(value, tpl).to.not.match(/^file:/);
        if (/^(vf|af|filter|filter_complex|lavfi)$/.test(base)) {
          // A filter graph: no filter that opens files, no option that names one.
          const plain = value.replace(/['"\\]/g, '');
          for (const f of DENIED_FILTERS) expect(new RegExp(`(^|[,;\\]])\\s*${f}(@\\w*)?(=|,|;|$)`).test(plain), `${tpl}: ${value}`).to.equal(false);
          expect(plain, tpl).to.not.match(/(^|[:=,;])(filename|file|f|textfile|fontfile)=/);
        }
        if (base === 'hls_segment_filename') expect(value.startsWith(`${HLS_DIR}/`) && !value.includes('..'), `${tpl}: ${value}`).to.equal(true);
        if (/^x26[45]-params$/.test(base)) expect(value, tpl).to.not.match(/(^|:)(stats|csv|qpfile|analysis-save)=|[/\\\\]/);
      }
    }), { numRuns: RUNS.template });
    report('property: template render runs', runs);
    report('property: template render runs accepted (argv checked)', accepted);
    expect(accepted).to.be.greaterThan(0);
  });
});
