import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { findTables } from '../src/streams/hls/hls-ts-source.js';
import { startHlsOrigin, type HlsOrigin } from './support/hls-origin.js';
import { httpRequest } from './support/http-request.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { openViewer, waitFor } from './support/ts-viewer.js';

const execFileAsync = promisify(execFile);

async function create(proxy: TestProxy, url: string): Promise<string> {
  const res = await fetch(proxy.url('/streams'), { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ url }) });
  expect(res.status).to.equal(200);
  return ((await res.json()) as { stream_id: string }).stream_id;
}

/** PAT packets (pid 0, payload start) in an aligned TS buffer. */
function patCount(ts: Buffer): number {
  let n = 0;
  for (let off = 0; off + 188 <= ts.length; off += 188) {
    if (ts[off] === 0x47 && (((ts[off + 1]! & 0x1f) << 8) | ts[off + 2]!) === 0 && (ts[off + 1]! & 0x40) !== 0) n++;
  }
  return n;
}

async function probe(ts: Buffer): Promise<{ types: string[]; packets: number }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hls-ts-'));
  try {
    const file = path.join(dir, 'out.ts');
    await writeFile(file, ts);
    const { stdout } = await execFileAsync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_type', '-of', 'csv=p=0', file]);
    const frames = await execFileAsync('ffprobe', ['-v', 'error', '-count_packets', '-select_streams', 'v:0', '-show_entries', 'stream=nb_read_packets', '-of', 'csv=p=0', file]);
    return { types: [...new Set(stdout.split('\n').filter(Boolean))].sort(), packets: Number(frames.stdout.trim().split('\n')[0]) };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('HLS sources on /stream/{id} as MPEG-TS', function () {
  this.timeout(90_000);
  let origin: HlsOrigin;
  let proxy: TestProxy;

  before(async () => {
    origin = await startHlsOrigin();
    proxy = await startProxy({ SHARED_STREAM_GRACE: '0.5' });
  });
  after(async () => {
    await proxy?.close();
    await origin?.close();
  });

  it('a finished playlist plays as its segments in order, byte for byte, then ends', async () => {
    const id = await create(proxy, origin.url('/hls/v1/media.m3u8'));
    const res = await httpRequest(proxy.url(`/stream/${id}`));
    expect(res.status).to.equal(200);
    expect(res.headers['content-type']).to.equal('video/mp2t');
    expect(res.body.equals(Buffer.concat(origin.ts))).to.equal(true);
  });

  it('after a discontinuity, a segment without PAT/PMT is preceded by the last PAT/PMT again', async () => {
    const tables = findTables(origin.ts[0]!)!;
    expect(tables).to.have.length(376);
    expect(origin.noTables.length).to.be.lessThan(origin.ts[1]!.length);
    const id = await create(proxy, origin.url('/hls/disc/media.m3u8'));
    const res = await httpRequest(proxy.url(`/stream/${id}`));
    expect(res.status).to.equal(200);
    expect(res.body.equals(Buffer.concat([origin.ts[0]!, tables, origin.noTables]))).to.equal(true);
  });

  it('AES-128 segments are decrypted', async () => {
    const id = await create(proxy, origin.url('/hls/enc/media.m3u8'));
    const res = await httpRequest(proxy.url(`/stream/${id}`));
    expect(res.status).to.equal(200);
    expect(res.body.equals(Buffer.concat(origin.ts))).to.equal(true);
  });

  it('a live playlist plays as continuous, 188-aligned TS across segment boundaries and a discontinuity', async () => {
    const id = await create(proxy, origin.url('/live/media.m3u8'));
    const v = openViewer(proxy.url(`/stream/${id}`), { keepBody: true });
    try {
      expect(await v.status).to.equal(200);
      const segBytes = origin.ts[0]!.length;
      // The live edge (3 segments) plus 3 more as the playlist advances: at least 5 boundaries,
      // and a wrap of the origin's 3 segments (a discontinuity) among them.
      await waitFor(() => v.bytes() >= segBytes * 6, 30_000, 'six segments');
      const body = v.body();
      expect(body[0]).to.equal(0x47);
      expect(v.misaligned()).to.equal(0);
      expect(patCount(body)).to.be.at.least(6);
      const p = await probe(body);
      expect(p.types).to.deep.equal(['audio', 'video']);
      // 25 fps, 1 s per segment: every segment's video decoded.
      expect(p.packets).to.be.at.least(25 * 5);
    } finally {
      v.close();
    }
    const segs = [...Array(40).keys()].filter((s) => origin.requests(`/live/s${s}.ts`) > 0);
    for (const s of segs) expect(origin.requests(`/live/s${s}.ts`), `s${s}.ts fetched once`).to.equal(1);
  });

  it('a .m3u8 under /movie/ is a 302 to the HLS route (username, client_id kept) when it is a playlist, plain VOD when not', async () => {
    const film = await create(proxy, origin.url('/movie/film.m3u8'));
    const r = await httpRequest(proxy.url(`/m3u-proxy/stream/${film}?username=ann&client_id=c9&other=x`));
    expect(r.status).to.equal(302);
    expect(r.headers.location).to.equal(`/m3u-proxy/hls/${film}/playlist.m3u8?username=ann&client_id=c9`);
    const pl = await httpRequest(proxy.url(String(r.headers.location)));
    expect(pl.status).to.equal(200);
    expect(pl.body.toString()).to.match(/^#EXTM3U/);

    const fake = await create(proxy, origin.url('/movie/notreally.m3u8'));
    const v = await httpRequest(proxy.url(`/stream/${fake}`));
    expect(v.status).to.equal(200);
    expect(v.body.equals(origin.ts[0]!)).to.equal(true);
  });

  it('an extensionless live URL that answers a playlist is played as HLS, not 502', async () => {
    const id = await create(proxy, origin.url('/live/plain'));
    const res = await httpRequest(proxy.url(`/stream/${id}`));
    expect(res.status).to.equal(200);
    expect(res.body.equals(Buffer.concat(origin.ts))).to.equal(true);
  });
});
