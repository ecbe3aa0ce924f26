import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startCluster, type TestCluster } from './support/cluster.js';
import { startHlsOrigin, type HlsOrigin } from './support/hls-origin.js';
import { httpRequest } from './support/http-request.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { report } from './support/report.js';
import { sleep, waitFor } from './support/ts-viewer.js';

const execFileAsync = promisify(execFile);
const TOKEN = 'hls-test-token-123456';

const uriLines = (text: string): string[] => text.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
const attrUris = (text: string): string[] => [...text.matchAll(/[:,]URI="([^"]*)"/g)].map((m) => m[1]!);
const allUris = (text: string): string[] => [...uriLines(text), ...attrUris(text)];

async function create(base: string, url: string, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await fetch(`${base}/streams`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', 'X-API-Token': TOKEN }, body: JSON.stringify({ url, ...extra }),
  });
  const body = (await res.json()) as { stream_id: string; stream_type: string };
  expect(res.status, JSON.stringify(body)).to.equal(200);
  return body.stream_id;
}

describe('HLS proxy', function () {
  this.timeout(120_000);
  let origin: HlsOrigin;

  before(async () => {
    origin = await startHlsOrigin();
  });
  after(async () => {
    await origin?.close();
  });

  describe('one worker', () => {
    let proxy: TestProxy;
    before(async () => {
      proxy = await startProxy({ API_TOKEN: TOKEN, CLIENT_TIMEOUT: '2', SHARED_STREAM_GRACE: '0.5' });
    });
    after(async () => {
      await proxy?.close();
    });
    const get = (p: string, headers: Record<string, string> = {}) => httpRequest(proxy.url(p), { headers });

    it('rewrites every URI of a master playlist to signed proxy URIs and keeps every other line byte for byte', async () => {
      const id = await create(proxy.base, origin.url('/hls/master.m3u8'), { user_agent: 'HlsTestAgent/1.0', headers: { 'X-Provider-Key': 'k1' } });
      const res = await get(`/m3u-proxy/hls/${id}/playlist.m3u8?client_id=c1`);
      expect(res.status, res.body.toString()).to.equal(200);
      expect(res.headers['content-type']).to.equal('application/vnd.apple.mpegurl');
      // The stream's user agent and headers went upstream.
      expect(origin.lastHeaders('/hls/master.m3u8')!['user-agent']).to.equal('HlsTestAgent/1.0');
      expect(origin.lastHeaders('/hls/master.m3u8')!['x-provider-key']).to.equal('k1');
      const text = res.body.toString('utf8');
      const uris = allUris(text);
      // 4 variants + EXT-X-MEDIA + I-FRAME + SESSION-KEY
      expect(uris).to.have.length(7);
      for (const u of uris) {
        expect(u).to.match(new RegExp(`^/m3u-proxy/hls/${id}/(playlist\\.m3u8|segment\\.ts)\\?url=[^&]+&client_id=c1&exp=\\d+&sig=[A-Za-z0-9_-]+$`));
      }
      const targets = uris.map((u) => new URLSearchParams(u.split('?')[1]).get('url'));
      expect(targets).to.include.members([
        origin.url('/hls/v1/media.m3u8'), origin.url('/hls/v2/media.m3u8'), origin.url('/hls/fmp4/media.m3u8'),
        origin.url('/hls/enc/media.m3u8'), origin.url('/keys/k1.key'),
      ]);
      // Everything but the URIs is the origin's text.
      const upstream = (await httpRequest(origin.url('/hls/master.m3u8'))).body.toString('utf8');
      const strip = (t: string): string => t.replace(/URI="[^"]*"/g, 'URI=""').split('\n').filter((l) => l.startsWith('#') || !l.trim()).join('\n');
      expect(strip(text)).to.equal(strip(upstream));
      expect(text).to.include('#EXT-X-ORIGIN-CUSTOM:foo="bar",n=1');
    });

    it('variants, segments, keys, fMP4 maps and LL-HLS parts come through byte-identical with their content types', async () => {
      const id = await create(proxy.base, origin.url('/hls/master.m3u8'));
      const master = (await get(`/hls/${id}/playlist.m3u8?client_id=c2`)).body.toString();
      const variant = (suffix: string): string => uriLines(master).find((u) => decodeURIComponent(u).includes(suffix))!;

      const v1 = (await get(variant('/hls/v1/media.m3u8'))).body.toString();
      expect(v1).to.include('#EXT-X-ORIGIN-CUSTOM:v1');
      const segs = uriLines(v1);
      expect(segs).to.have.length(origin.ts.length);
      for (const [i, s] of segs.entries()) {
        expect(s).to.match(/\/segment\.ts\?url=/);
        const body = await get(s);
        expect(body.status).to.equal(200);
        expect(body.headers['content-type']).to.equal('video/mp2t');
        expect(body.body.equals(origin.ts[i]!), `segment ${i} byte-identical`).to.equal(true);
      }

      const fm = (await get(variant('/hls/fmp4/media.m3u8'))).body.toString();
      const map = attrUris(fm)[0]!;
      expect(map).to.match(/\/segment\.mp4\?url=/);
      const init = await get(map);
      expect(init.headers['content-type']).to.equal('video/mp4');
      expect(init.body.equals(origin.fmp4Init)).to.equal(true);
      const m4s = uriLines(fm);
      expect(m4s[0]).to.match(/\/segment\.m4s\?url=/);
      const part = await get(m4s[0]!);
      expect(part.headers['content-type']).to.equal('video/iso.segment');
      expect(part.body.equals(origin.fmp4[0]!)).to.equal(true);

      const en = (await get(variant('/hls/enc/media.m3u8'))).body.toString();
      const keyUri = attrUris(en)[0]!;
      expect(keyUri).to.match(/\/segment\.ts\?url=/);
      expect((await get(keyUri)).body.equals(origin.key)).to.equal(true);
      expect(en).to.match(/IV=0x000102030405060708090a0b0c0d0e0f/);

      const v2 = (await get(variant('/hls/v2/media.m3u8'))).body.toString();
      const ll = v2.split('\n').filter((l) => /^#EXT-X-(PART|PRELOAD-HINT)/.test(l));
      expect(ll).to.have.length(2);
      for (const l of ll) expect(l).to.match(new RegExp(`URI="/m3u-proxy/hls/${id}/segment\\.ts\\?url=`));
      expect((await get(attrUris(ll[1]!)[0]!)).body.equals(origin.ts[1]!)).to.equal(true);
    });

    it('resolves relative URIs against the final URL after a redirect', async () => {
      const id = await create(proxy.base, origin.url('/r/media.m3u8'));
      const text = (await get(`/hls/${id}/playlist.m3u8`)).body.toString();
      const first = new URLSearchParams(uriLines(text)[0]!.split('?')[1]).get('url');
      expect(first).to.equal(origin.url('/hls/v1/seg0.ts'));
      expect((await get(uriLines(text)[0]!)).body.equals(origin.ts[0]!)).to.equal(true);
    });

    it('refuses tampered, expired and unsigned targets; file:, local paths and .. never return file contents', async () => {
      const id = await create(proxy.base, origin.url('/hls/v1/media.m3u8'));
      const seg = uriLines((await get(`/hls/${id}/playlist.m3u8`)).body.toString())[0]!;
      const tampered = seg.replace(/url=[^&]+/, `url=${encodeURIComponent(origin.url('/hls/v1/seg1.ts'))}`);
      const t = await get(tampered);
      expect(t.status).to.equal(403);
      expect(JSON.parse(t.body.toString()).code).to.equal('SIGNATURE_INVALID');
      expect((await get(seg.replace(/exp=\d+/, 'exp=1000'))).status).to.equal(403);
      // Unsigned ?url= needs the token.
      const unsigned = `/hls/${id}/segment.ts?url=${encodeURIComponent(origin.url('/hls/v1/seg0.ts'))}`;
      expect((await get(unsigned)).status).to.equal(403);
      const withToken = await get(unsigned, { 'X-API-Token': TOKEN });
      expect(withToken.status).to.equal(200);
      expect(withToken.body.equals(origin.ts[0]!)).to.equal(true);
      for (const bad of ['file:///etc/passwd', '/etc/passwd', '../../../../etc/passwd', 'http://127.0.0.1:1/../../etc/passwd']) {
        for (const route of ['segment.ts', 'playlist.m3u8']) {
          const r = await get(`/hls/${id}/${route}?url=${encodeURIComponent(bad)}`, { 'X-API-Token': TOKEN });
          expect(r.status, `${route} ${bad}`).to.be.oneOf([403, 409, 422, 502]);
          expect(r.body.toString()).to.not.include('root:');
        }
        const s = await get(`/hls/${id}/segment.ts?seg=${encodeURIComponent(bad)}`);
        expect(s.status).to.equal(403);
        expect(s.body.toString()).to.not.include('root:');
      }
      expect((await get('/hls/0123456789abcdef0123456789abcdef/playlist.m3u8')).status).to.equal(404);
    });

    it('ffprobe plays the rewritten master and the AES-128 rendition through the proxy', async () => {
      const simple = await create(proxy.base, origin.url('/hls/simple.m3u8'));
      const enc = await create(proxy.base, origin.url('/hls/enc/media.m3u8'));
      for (const id of [simple, enc]) {
        const { stdout } = await execFileAsync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_type', '-of', 'csv=p=0', proxy.url(`/hls/${id}/playlist.m3u8`)], { timeout: 60_000 });
        expect([...new Set(stdout.split('\n').filter(Boolean))].sort()).to.deep.equal(['audio', 'video']);
      }
    });

    it('an HLS viewer counts once while it polls, shows in /clients and counts, and leaves after CLIENT_TIMEOUT', async () => {
      // A stream of its own (the query makes another id): viewers of earlier tests on the same
      // playlist may not have timed out yet.
      const id = await create(proxy.base, origin.url('/hls/v1/media.m3u8?viewer-count=1'), { metadata: { id: 77, provider: 'p-hls' } });
      for (let i = 0; i < 3; i++) {
        const text = (await get(`/hls/${id}/playlist.m3u8?client_id=poller`)).body.toString();
        await get(uriLines(text)[i]!);
      }
      const api = async <T>(p: string): Promise<T> => JSON.parse((await get(p, { 'X-API-Token': TOKEN })).body.toString()) as T;
      const clients = (await api<{ clients: Array<{ client_id: string; stream_id: string; segments_served: number }> }>('/clients')).clients.filter((c) => c.stream_id === id);
      expect(clients.map((c) => c.client_id)).to.deep.equal(['poller']);
      const entry = await api<{ stream: { client_count: number; is_active: boolean } }>(`/streams/${id}`);
      expect(entry.stream.client_count).to.equal(1);
      const counts = await api<{ counts: Record<string, number> }>('/streams/counts-by-metadata?field=provider&values=p-hls&active_only=true');
      expect(counts.counts['p-hls']).to.equal(1);
      await waitFor(async () => (await api<{ clients: Array<{ stream_id: string }> }>('/clients')).clients.every((c) => c.stream_id !== id), 10_000, 'the HLS viewer to time out');
      // DELETE /hls/{id}/clients/{client_id}: token needed, 404 for an unknown viewer, 200 and gone for a polling one.
      await get(`/hls/${id}/playlist.m3u8?client_id=kicked`);
      const del = (c: string, headers: Record<string, string> = { 'X-API-Token': TOKEN }) => httpRequest(proxy.url(`/hls/${id}/clients/${c}`), { method: 'DELETE', headers });
      expect((await del('kicked', {})).status).to.equal(401);
      expect((await del('nobody')).status).to.equal(404);
      expect((await del('kicked')).status).to.equal(200);
      expect((await api<{ clients: Array<{ stream_id: string }> }>('/clients')).clients.filter((c) => c.stream_id === id)).to.deep.equal([]);
      const after = await api<{ counts: Record<string, number> }>('/streams/counts-by-metadata?field=provider&values=p-hls&active_only=true');
      expect(after.counts['p-hls']).to.equal(0);
    });
  });

  describe('shared fetches across WORKERS=2', () => {
    let cluster: TestCluster;
    before(async () => {
      cluster = await startCluster({ WORKERS: '2', CLIENT_TIMEOUT: '3', SHARED_STREAM_GRACE: '1', LEASE_TTL_MS: '2000', API_TOKEN: TOKEN }, 60_000);
    });
    after(async () => {
      await cluster?.stop();
    });

    /** N viewers poll the live playlist for `ms` and fetch every segment they have not fetched. */
    async function poll(ids: string[], ms: number): Promise<{ workers: Set<string>; segments: number }> {
      const workers = new Set<string>();
      let segments = 0;
      const until = Date.now() + ms;
      await Promise.all(ids.map(async (id, v) => {
        const seen = new Set<string>();
        while (Date.now() < until) {
          const pl = await httpRequest(cluster.url(`/hls/${id}/playlist.m3u8?client_id=viewer${v}`));
          expect(pl.status, pl.body.toString()).to.equal(200);
          workers.add(String(pl.headers['x-worker-id']));
          for (const u of uriLines(pl.body.toString())) {
            const target = new URLSearchParams(u.split('?')[1]).get('url')!;
            if (seen.has(target)) continue;
            seen.add(target);
            const s = await httpRequest(cluster.url(u));
            expect(s.status).to.equal(200);
            expect(s.body[0]).to.equal(0x47);
            workers.add(String(s.headers['x-worker-id']));
            segments++;
          }
          await sleep(300);
        }
      }));
      return { workers, segments };
    }

    it('10 viewers polling one live stream: each segment fetched once at the origin, playlist requests bounded', async () => {
      const id = await create(cluster.url(''), origin.url('/live/media.m3u8'));
      const before = { seg: origin.requestsUnder('/live/s'), pl: origin.requests('/live/media.m3u8') };
      const started = Date.now();
      const { workers, segments } = await poll(Array(10).fill(id), 5000);
      const seconds = (Date.now() - started) / 1000;
      const segReqs = origin.requestsUnder('/live/s') - before.seg;
      const plReqs = origin.requests('/live/media.m3u8') - before.pl;
      expect(workers.size, 'viewers landed on both workers').to.equal(2);
      // Every distinct segment path was asked of the origin exactly once.
      const distinct = new Set<number>();
      for (let s = 0; s < 100; s++) if (origin.requests(`/live/s${s}.ts`) > 0) distinct.add(s);
      for (const s of distinct) expect(origin.requests(`/live/s${s}.ts`), `segment s${s}.ts`).to.equal(1);
      expect(segReqs).to.equal(distinct.size);
      // Playlists cached for half the 1 s target duration: about 2 per second, whatever the viewer count.
      const bound = Math.ceil(seconds / 0.5) + 2;
      expect(plReqs).to.be.at.most(bound);
      report('10 viewers, shared fetch: origin segment requests / segments served', `${segReqs} / ${segments}`);
      report('10 viewers, shared fetch: origin playlist requests', `${plReqs} in ${seconds.toFixed(1)} s (bound ${bound})`);
    });

    it('the same 10 viewers without sharing (10 distinct streams of the same origin) cost 10x', async () => {
      const ids = await Promise.all(Array.from({ length: 10 }, (_, i) => create(cluster.url(''), origin.url(`/live/media.m3u8?copy=${i}`))));
      const before = { seg: origin.requestsUnder('/live/s'), pl: origin.requests('/live/media.m3u8') };
      const { segments } = await poll(ids, 5000);
      const segReqs = origin.requestsUnder('/live/s') - before.seg;
      const plReqs = origin.requests('/live/media.m3u8') - before.pl;
      expect(segReqs).to.equal(segments);
      report('10 viewers, no shared fetch: origin segment requests / segments served', `${segReqs} / ${segments}`);
      report('10 viewers, no shared fetch: origin playlist requests', plReqs);
    });
  });
});
