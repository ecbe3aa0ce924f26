// The small mismatches found when replaying m3u-editor's calls: LOG_LEVEL spellings, client_id
// limits on every route, the pool key actually used, /info's ffmpeg_version, the failover
// answer's stream_type and the viewer IP behind a trusted proxy.
import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import net from 'node:net';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/logger.js';
import { apiCall } from './support/api-call.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { openViewer, sleep, waitFor } from './support/ts-viewer.js';

const LONG_ID = 'c'.repeat(129);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

describe('m3u-editor compatibility details', function () {
  this.timeout(60_000);
  let origin: Origin;

  before(async () => {
    origin = await startOrigin();
  });
  after(async () => {
    await origin?.close();
  });

  describe('LOG_LEVEL', () => {
    it('accepts the Python spellings in any case and maps them to winston levels', () => {
      const cases: Array<[string, string]> = [
        ['DEBUG', 'debug'], ['info', 'info'], ['Info', 'info'], ['WARNING', 'warn'], ['warning', 'warn'],
        ['ERROR', 'error'], ['CRITICAL', 'error'], ['critical', 'error'], ['warn', 'warn'],
      ];
      for (const [given, level] of cases) {
        expect(parseConfig({ LOG_LEVEL: given }, { cpus: 1 }).logLevel, given).to.equal(level);
      }
      expect(() => parseConfig({ LOG_LEVEL: 'LOUD' }, { cpus: 1 })).to.throw(/LOG_LEVEL/);
      // The mapped level filters as named: WARNING lets warnings through, not info.
      const lines: string[] = [];
      const logger = createLogger({ level: parseConfig({ LOG_LEVEL: 'WARNING' }, { cpus: 1 }).logLevel, format: 'json' });
      logger.transports[0]!.log = (info: { message: string }, next: () => void) => {
        lines.push(info.message);
        next();
      };
      logger.info('not shown');
      logger.warn('shown');
      expect(lines).to.deep.equal(['shown']);
    });

    it('the proxy starts with LOG_LEVEL=WARNING (it used to exit 1)', async () => {
      const port = await freePort();
      const child = spawn(process.execPath, ['dist/src/single.js'], {
        env: { ...process.env, LOG_LEVEL: 'WARNING', HOST: '127.0.0.1', PORT: String(port) },
        stdio: 'ignore',
      });
      let exitCode: number | null = null;
      child.on('exit', (c) => (exitCode = c));
      try {
        await waitFor(async () => {
          if (exitCode !== null) throw new Error(`the proxy exited with ${exitCode}`);
          return fetch(`http://127.0.0.1:${port}/health`).then((r) => r.status === 200, () => false);
        }, 45_000, 'the proxy to answer /health');
      } finally {
        child.kill('SIGTERM');
        await new Promise((r) => (exitCode !== null ? r(null) : child.once('exit', r)));
      }
    });
  });

  describe('on one proxy', () => {
    let proxy: TestProxy;
    before(async () => {
      proxy = await startProxy({ SHARED_STREAM_GRACE: '0.2' });
    });
    after(async () => {
      await proxy?.close();
    });

    it('a client_id above 128 characters is a 422 on every route that takes one', async () => {
      const created = await apiCall<{ stream_id: string }>(proxy.base, '/streams', {
        method: 'POST', body: { url: origin.url('/live/cid.ts'), metadata: { playlist_uuid: 'p1' } },
      });
      const id = created.body.stream_id;
      const del = await apiCall<{ code: string; errors: Array<{ field: string }> }>(
        proxy.base, `/streams/by-metadata?field=playlist_uuid&value=p1&force=false&client_id=${LONG_ID}`, { method: 'DELETE' },
      );
      expect(del.status).to.equal(422);
      expect(del.body.errors[0]!.field).to.equal('client_id');
      // The same parameters as a JSON body (as the editor's HTTP client sends them).
      const inBody = await apiCall<{ errors: Array<{ field: string }> }>(proxy.base, '/streams/by-metadata', {
        method: 'DELETE', body: { field: 'playlist_uuid', value: 'p1', force: false, client_id: LONG_ID },
      });
      expect(inBody.status).to.equal(422);
      expect(inBody.body.errors[0]!.field).to.equal('client_id');
      const play = await apiCall(proxy.base, `/stream/${id}?client_id=${LONG_ID}`);
      expect(play.status).to.equal(422);
      const prefixed = await apiCall(proxy.base, `/m3u-proxy/stream/${id}?client_id=${LONG_ID}`, { method: 'HEAD' });
      expect(prefixed.status).to.equal(422);
      // Exactly 128 is fine, and the stream was not deleted by the refused call.
      const ok = await apiCall(proxy.base, `/streams/by-metadata?field=playlist_uuid&value=p1&force=false&client_id=${'c'.repeat(128)}`, { method: 'DELETE' });
      expect(ok.status).to.equal(200);
      expect(origin.totalRequests('/live/cid.ts')).to.equal(0);
    });

    it("/info's ffmpeg_version is the whole first line of `ffmpeg -version`", async () => {
      const first = execFileSync('ffmpeg', ['-hide_banner', '-version'], { encoding: 'utf8' }).split('\n')[0]!.trim();
      const info = await apiCall<{ ffmpeg_version: string }>(proxy.base, '/info');
      expect(first).to.match(/^ffmpeg version \S+ Copyright/);
      expect(info.body.ffmpeg_version).to.equal(first);
    });

    it("the manual-failover answer's stream_type uses the words of /streams", async () => {
      const created = await apiCall<{ stream_id: string }>(proxy.base, '/streams', {
        method: 'POST', body: { url: origin.url('/live/fo-words.ts'), failover_urls: [origin.url('/live/fo-words-2.ts')] },
      });
      const id = created.body.stream_id;
      const fo = await apiCall<{ stream_type: string }>(proxy.base, `/streams/${id}/failover`, { method: 'POST' });
      const list = await apiCall<{ streams: Array<{ stream_id: string; stream_type: string }> }>(proxy.base, '/streams');
      const entry = list.body.streams.find((s) => s.stream_id === id)!;
      expect(fo.status).to.equal(200);
      expect(entry.stream_type).to.equal('Live Continuous');
      expect(fo.body.stream_type).to.equal(entry.stream_type);
    });

    it('behind a trusted proxy the viewer IP is the first X-Forwarded-For entry; a garbled entry falls back to the peer', async () => {
      const created = await apiCall<{ stream_id: string }>(proxy.base, '/streams', { method: 'POST', body: { url: origin.url('/live/xff.ts') } });
      const id = created.body.stream_id;
      const a = openViewer(proxy.url(`/stream/${id}?client_id=xff-a`), { headers: { 'X-Forwarded-For': '203.0.113.7, 10.0.0.2, 127.0.0.1' } });
      const b = openViewer(proxy.url(`/stream/${id}?client_id=xff-b`), { headers: { 'X-Forwarded-For': 'not-an-ip, 10.0.0.2' } });
      try {
        expect(await a.status).to.equal(200);
        expect(await b.status).to.equal(200);
        const clients = await apiCall<{ clients: Array<{ client_id: string; ip_address: string }> }>(proxy.base, '/clients');
        const ip = (cid: string) => clients.body.clients.find((c) => c.client_id === cid)?.ip_address;
        expect(ip('xff-a')).to.equal('203.0.113.7');
        expect(ip('xff-b')).to.equal('127.0.0.1');
      } finally {
        a.close();
        b.close();
      }
    });
  });

  it('an untrusted peer cannot set its IP with X-Forwarded-For (TRUST_PROXY=false)', async () => {
    const proxy = await startProxy({ TRUST_PROXY: 'false', SHARED_STREAM_GRACE: '0.2' });
    try {
      const created = await apiCall<{ stream_id: string }>(proxy.base, '/streams', { method: 'POST', body: { url: origin.url('/live/xff-untrusted.ts') } });
      const v = openViewer(proxy.url(`/stream/${created.body.stream_id}?client_id=u1`), { headers: { 'X-Forwarded-For': '203.0.113.9' } });
      try {
        expect(await v.status).to.equal(200);
        const clients = await apiCall<{ clients: Array<{ client_id: string; ip_address: string }> }>(proxy.base, '/clients');
        expect(clients.body.clients.find((c) => c.client_id === 'u1')?.ip_address).to.equal('127.0.0.1');
      } finally {
        v.close();
      }
    } finally {
      await proxy.close();
    }
  });

  it('url_only: two templates of one URL share one FFmpeg and GET /streams/{id} reports that one pool key for both', async () => {
    const proxy = await startProxy({ STREAM_SHARING_STRATEGY: 'url_only', SHARED_STREAM_GRACE: '0.2' });
    const marker = '/live/url-only-key.ts';
    try {
      const make = async (profile: string) => {
        const res = await apiCall<{ stream_id: string }>(proxy.base, '/transcode', { method: 'POST', body: { url: origin.url(marker), profile } });
        expect(res.status, JSON.stringify(res.body)).to.equal(200);
        return res.body.stream_id;
      };
      const id1 = await make('-i {input_url} -c copy {output_args}');
      const id2 = await make('-i {input_url} -c copy -map 0 {output_args}');
      expect(id1).to.not.equal(id2);
      const v1 = openViewer(proxy.url(`/stream/${id1}`));
      const v2 = openViewer(proxy.url(`/stream/${id2}`));
      try {
        expect([await v1.status, await v2.status]).to.deep.equal([200, 200]);
        await waitFor(() => v1.bytes() > 0 && v2.bytes() > 0, 20_000, 'both viewers to get bytes');
        const key = async (id: string) => (await apiCall<{ stream: { pool_key: string } }>(proxy.base, `/streams/${id}`)).body.stream.pool_key;
        const [k1, k2] = [await key(id1), await key(id2)];
        expect(k1).to.equal(k2);
        const pooled = await apiCall<{ streams: Array<{ pool_key: string; client_count: number }> }>(proxy.base, '/stats/pooled');
        expect(pooled.body.streams.map((s) => s.pool_key)).to.deep.equal([k1]);
        expect(origin.totalRequests(marker)).to.equal(1);
      } finally {
        v1.close();
        v2.close();
      }
      await sleep(300);
    } finally {
      await proxy.close();
    }
  });
});
