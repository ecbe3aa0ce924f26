import { expect } from 'chai';
import { createHash } from 'node:crypto';
import request from 'supertest';
import { UrlSigner } from '../src/http/url-signer.js';
import { testApp } from './support/proxy.js';

const md5 = (s: string): string => createHash('md5').update(s).digest('hex');
const LIVE = 'http://127.0.0.1:9/live.ts';

type App = ReturnType<typeof testApp>;

function expectError(res: request.Response, status: number, code: string): void {
  expect(res.status, JSON.stringify(res.body)).to.equal(status);
  expect(res.type).to.equal('application/json');
  if ((res as unknown as { req: { method: string } }).req.method === 'HEAD') return; // no body to read
  expect(res.body.code).to.equal(code);
  expect(res.body.detail).to.be.a('string').and.not.empty;
  expect(JSON.stringify(res.body)).to.not.match(/at .*\.js:\d+/); // no stack
}

describe('management API', () => {
  let t: App;
  beforeEach(() => (t = testApp()));
  afterEach(() => t.close());

  it('creates streams with the md5 of the url as id, get-or-create, latest definition wins', async () => {
    const first = await request(t.app).post('/streams').send({ url: LIVE, metadata: { id: 42, hd: true, name: 'One' } });
    expect(first.status).to.equal(200);
    expect(first.body).to.include({ stream_id: md5(LIVE), primary_url: LIVE, stream_type: 'direct' });
    expect(first.body.stream_endpoint).to.equal(`/stream/${md5(LIVE)}`);
    expect(first.body.metadata).to.deep.equal({ id: '42', hd: 'true', name: 'One' });
    const created = (await request(t.app).get(`/streams/${md5(LIVE)}`)).body.stream.created_at;

    const second = await request(t.app).post('/m3u-proxy/streams').send({ url: LIVE, metadata: { id: 43 }, failover_urls: ['http://127.0.0.1:9/b.ts'] });
    expect(second.body.stream_id).to.equal(md5(LIVE));
    const got = await request(t.app).get(`/streams/${md5(LIVE)}`);
    expect(got.status).to.equal(200);
    expect(got.body.stream).to.include({ stream_id: md5(LIVE), stream_type: 'Live Continuous', client_count: 0, is_active: false, has_failover: true, created_at: created });
    expect(got.body.stream.metadata).to.deep.equal({ id: '43' });
    expect(got.body.client_count).to.equal(0);
    const list = await request(t.app).get('/streams');
    expect(list.body.total).to.equal(1);
  });

  it('derives the type from the url', async () => {
    const hls = await request(t.app).post('/streams').send({ url: 'http://127.0.0.1:9/a/index.m3u8?x=1' });
    expect(hls.body.stream_type).to.equal('hls');
    expect(hls.body.stream_endpoint).to.equal(`/hls/${hls.body.stream_id}/playlist.m3u8`);
    const vod = await request(t.app).post('/streams').send({ url: 'http://127.0.0.1:9/movie/1/2/3.mkv' });
    expect(vod.body.stream_type).to.equal('direct');
    const entry = await request(t.app).get(`/streams/${vod.body.stream_id}`);
    expect(entry.body.stream.stream_type).to.equal('VOD');
  });

  it('deletes a stream and answers 404 after', async () => {
    await request(t.app).post('/streams').send({ url: LIVE });
    const del = await request(t.app).delete(`/streams/${md5(LIVE)}`);
    expect(del.body).to.deep.equal({ message: `Stream ${md5(LIVE)} deleted` });
    expectError(await request(t.app).get(`/streams/${md5(LIVE)}`), 404, 'STREAM_NOT_FOUND');
    expectError(await request(t.app).delete(`/streams/${md5(LIVE)}`), 404, 'STREAM_NOT_FOUND');
  });

  it('answers metadata queries and deletes by metadata', async () => {
    const mk = (n: number, provider: string, extra = {}) =>
      request(t.app).post('/streams').send({ url: `http://127.0.0.1:9/live/${n}.ts`, metadata: { id: n, provider_profile_id: provider, ...extra } });
    await mk(1, 'p1');
    await mk(2, 'p1', { transcoding: 'TRUE' });
    await mk(3, 'p2');
    const all = await request(t.app).get('/streams/by-metadata').query({ field: 'provider_profile_id', value: 'p1', active_only: 'false' });
    expect(all.body.total_matching).to.equal(2);
    expect(all.body.filter).to.deep.equal({ field: 'provider_profile_id', value: 'p1' });
    const active = await request(t.app).get('/streams/by-metadata').query({ field: 'provider_profile_id', value: 'p1' });
    expect(active.body).to.include({ total_matching: 0, active_only: true, total_clients: 0 });
    const bool = await request(t.app).get('/streams/by-metadata').query({ field: 'transcoding', value: 'true', active_only: '0' });
    expect(bool.body.total_matching).to.equal(1);
    const counts = await request(t.app).get('/streams/counts-by-metadata').query({ field: 'provider_profile_id', values: 'p1,p2,p3', active_only: 'false' });
    expect(counts.body).to.deep.equal({ field: 'provider_profile_id', counts: { p1: 2, p2: 1, p3: 0 } });

    const del = await request(t.app).delete('/streams/by-metadata').query({ field: 'provider_profile_id', value: 'p1', exclude_channel_id: '1' });
    expect(del.body.deleted_count).to.equal(1);
    expect(del.body.skipped_streams).to.deep.equal([{ stream_id: md5('http://127.0.0.1:9/live/1.ts'), reason: 'excluded_by_channel_id' }]);
    const oldest = await request(t.app).delete('/streams/oldest-by-metadata').query({ field: 'provider_profile_id', value: 'p1' });
    expect(oldest.body).to.include({ deleted_stream: md5('http://127.0.0.1:9/live/1.ts'), deleted_count: 1 });
    const none = await request(t.app).delete('/streams/oldest-by-metadata').query({ field: 'provider_profile_id', value: 'p1' });
    expect(none.body.deleted_count).to.equal(0);
    expect((await request(t.app).get('/streams')).body.total).to.equal(1);
  });

  it('reports stats, clients, health and info without secrets', async () => {
    const s = testApp({ API_TOKEN: 'token-token-token', REDIS_PASSWORD: 'hunter2hunter2', URL_SIGNING_SECRET: 'signing-secret-0123456789' });
    try {
      const auth = { 'X-API-Token': 'token-token-token' };
      const stats = await request(s.app).get('/stats').set(auth);
      expect(stats.body).to.include.keys('total_streams', 'active_streams', 'total_clients', 'active_clients', 'total_bytes_served', 'uptime_seconds', 'streams', 'clients', 'pooling');
      const clients = await request(s.app).get('/clients').set(auth);
      expect(clients.body).to.deep.equal({ clients: [], total_clients: 0 });
      const health = await request(s.app).get('/m3u-proxy/health').query({ api_token: 'token-token-token' });
      expect(health.status).to.equal(200);
      expect(health.body).to.include({ status: 'healthy', root_path: '/m3u-proxy' });
      expect(health.body.coordinator).to.deep.equal({ backend: 'embedded', ok: true });
      const info = await request(s.app).get('/info').set(auth);
      expect(info.status).to.equal(200);
      expect(info.body.ffmpeg_version).to.be.a('string');
      const text = JSON.stringify(info.body);
      for (const secret of ['token-token-token', 'hunter2hunter2', 'signing-secret-0123456789']) expect(text).to.not.include(secret);
      const root = await request(s.app).get('/').set(auth);
      expect(root.body.status).to.equal('running');
      expect(root.headers['x-worker-id']).to.equal('test-1');
    } finally {
      await s.close();
    }
  });

  it('tests a connection and validates its url', async () => {
    expectError(await request(t.app).post('/test-connection').send({ url: 'file:///etc/passwd' }), 422, 'VALIDATION_ERROR');
    const res = await request(t.app).post('/test-connection').send({ url: 'http://127.0.0.1:9/' });
    expect(res.status).to.equal(200);
    expect(res.body).to.include({ success: false, url_tested: 'http://127.0.0.1:9' });
  });

  it('answers CORS preflights and exposes headers', async () => {
    const res = await request(t.app).options('/streams');
    expect(res.status).to.equal(204);
    expect(res.headers['access-control-allow-origin']).to.equal('*');
    expect(res.headers['access-control-expose-headers']).to.equal('*');
  });
});

describe('bad input', () => {
  let t: App;
  before(() => (t = testApp({ MAX_BODY_BYTES: '2048' })));
  after(() => t.close());

  const post = (body: string, type = 'application/json') =>
    request(t.app).post('/streams').set('Content-Type', type).send(body);

  it('malformed JSON → 400 BAD_REQUEST', async () => {
    expectError(await post('{"url": '), 400, 'BAD_REQUEST');
  });

  it('a body that is not JSON → 415', async () => {
    expectError(await post('url=http://x/', 'application/x-www-form-urlencoded'), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await post('hello', 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE');
  });

  it('an oversized body → 413', async () => {
    expectError(await post(JSON.stringify({ url: LIVE, metadata: { x: 'a'.repeat(4000) } })), 413, 'PAYLOAD_TOO_LARGE');
  });

  const invalid: Array<[string, unknown, string]> = [
    ['missing url', {}, 'url'],
    ['no body at all', undefined, 'body'],
    ['an array body', [LIVE], 'body'],
    ['url of the wrong type', { url: 5 }, 'url'],
    ['ftp url', { url: 'ftp://127.0.0.1/a.ts' }, 'url'],
    ['file url', { url: 'file:///etc/passwd' }, 'url'],
    ['a local path', { url: '/etc/passwd' }, 'url'],
    ['script in url', { url: 'http://127.0.0.1/<script>alert(1)</script>' }, 'url'],
    ['javascript: url', { url: 'javascript:alert(1)' }, 'url'],
    ['data: inside url', { url: 'http://127.0.0.1/?x=data:text/html,hi' }, 'url'],
    ['nested metadata', { url: LIVE, metadata: { a: { b: 1 } } }, 'metadata.a'],
    ['metadata not an object', { url: LIVE, metadata: 'x' }, 'metadata'],
    ['failover url not http', { url: LIVE, failover_urls: ['vbscript:x'] }, 'failover_urls.0'],
    ['header with a line break', { url: LIVE, headers: { 'X-A': 'a\r\nX-Evil: 1' } }, 'headers.X-A'],
    ['boolean of the wrong type', { url: LIVE, strict_live_ts: 'yes' }, 'strict_live_ts'],
  ];
  for (const [name, body, field] of invalid) {
    it(`${name} → 422 naming ${field}`, async () => {
      const res = body === undefined ? await request(t.app).post('/streams') : await request(t.app).post('/streams').send(body as object);
      expectError(res, 422, 'VALIDATION_ERROR');
      expect(res.body.errors.map((e: { field: string }) => e.field)).to.include(field);
    });
  }

  it('bad query parameters → 422', async () => {
    expectError(await request(t.app).get('/streams/by-metadata').query({ value: 'x' }), 422, 'VALIDATION_ERROR');
    expectError(await request(t.app).get('/streams/by-metadata').query({ field: 'a', value: 'x', active_only: 'maybe' }), 422, 'VALIDATION_ERROR');
    expectError(await request(t.app).get('/streams/counts-by-metadata').query({ field: 'a' }), 422, 'VALIDATION_ERROR');
  });

  it('unknown ids and routes → 404 JSON', async () => {
    expectError(await request(t.app).get('/streams/nope'), 404, 'STREAM_NOT_FOUND');
    expectError(await request(t.app).get('/stream/nope'), 404, 'STREAM_NOT_FOUND');
    expectError(await request(t.app).head('/stream/nope'), 404, 'STREAM_NOT_FOUND');
    expectError(await request(t.app).get('/no/such/route'), 404, 'NOT_FOUND');
    expectError(await request(t.app).get('/m3u-proxy/stats/detailed'), 404, 'NOT_FOUND');
    expectError(await request(t.app).post('/streams/nope/failover'), 404, 'STREAM_NOT_FOUND');
  });

  it('a client_id over 128 characters → 422', async () => {
    await request(t.app).post('/streams').send({ url: LIVE });
    expectError(await request(t.app).get(`/stream/${md5(LIVE)}`).query({ client_id: 'c'.repeat(129) }), 422, 'VALIDATION_ERROR');
  });

  it('manual failover without failover urls → 400 NO_FAILOVER', async () => {
    await request(t.app).post('/streams').send({ url: LIVE });
    expectError(await request(t.app).post(`/streams/${md5(LIVE)}/failover`), 400, 'NO_FAILOVER');
  });
});

describe('auth', () => {
  const TOKEN = 'the-api-token';
  let t: App;
  before(async () => {
    t = testApp({ API_TOKEN: TOKEN, URL_SIGNING_SECRET: 'a-signing-secret-of-length' });
    await request(t.app).post('/streams').set('X-API-Token', TOKEN).send({ url: LIVE });
  });
  after(() => t.close());

  for (const path of ['/streams', '/m3u-proxy/streams', '/stats', '/clients', '/health', '/info', `/streams/${md5(LIVE)}`]) {
    it(`${path}: 401 without a token, 403 with a wrong one, 200 by header or query`, async () => {
      const missing = await request(t.app).get(path);
      expectError(missing, 401, 'AUTH_REQUIRED');
      expect(missing.headers['www-authenticate']).to.equal('Bearer');
      expectError(await request(t.app).get(path).set('X-API-Token', 'wrong'), 403, 'AUTH_INVALID');
      expectError(await request(t.app).get(path).query({ api_token: 'wrong' }), 403, 'AUTH_INVALID');
      expect((await request(t.app).get(path).set('X-API-Token', TOKEN)).status).to.equal(200);
      expect((await request(t.app).get(path).query({ api_token: TOKEN })).status).to.equal(200);
    });
  }

  it('the header wins over the query', async () => {
    expectError(await request(t.app).get('/streams').set('X-API-Token', 'wrong').query({ api_token: TOKEN }), 403, 'AUTH_INVALID');
    expect((await request(t.app).get('/streams').set('X-API-Token', TOKEN).query({ api_token: 'wrong' })).status).to.equal(200);
  });

  it('POST and DELETE need the token too', async () => {
    expectError(await request(t.app).post('/streams').send({ url: LIVE }), 401, 'AUTH_REQUIRED');
    expectError(await request(t.app).delete(`/streams/${md5(LIVE)}`), 401, 'AUTH_REQUIRED');
  });

  it('player routes are public for existing ids', async () => {
    const head = await request(t.app).head(`/stream/${md5(LIVE)}`);
    expect(head.status).to.equal(200);
    expect(head.headers['content-type']).to.equal('video/mp2t');
    expect(head.headers['accept-ranges']).to.equal('none');
    expectError(await request(t.app).get('/stream/0123456789abcdef0123456789abcdef'), 404, 'STREAM_NOT_FOUND');
  });

  it('?url= creates a stream only with the token or a valid signature', async () => {
    const url = 'http://127.0.0.1:9/other.ts';
    const id = md5(url);
    expectError(await request(t.app).head(`/stream/${id}`).query({ url }), 401, 'AUTH_REQUIRED');
    expectError(await request(t.app).head(`/stream/${id}`).query({ url, exp: '9999999999', sig: 'forged' }), 403, 'SIGNATURE_INVALID');
    const expired = new UrlSigner('a-signing-secret-of-length', -10_000).sign(id, url);
    expectError(await request(t.app).head(`/stream/${id}`).query({ url, exp: String(expired.exp), sig: expired.sig }), 403, 'SIGNATURE_INVALID');
    expectError(await request(t.app).head(`/stream/${id}`).query({ url: 'file:///etc/passwd', api_token: TOKEN }), 422, 'VALIDATION_ERROR');
    const good = new UrlSigner('a-signing-secret-of-length', 60_000).sign(id, url);
    expect((await request(t.app).head(`/stream/${id}`).query({ url, exp: String(good.exp), sig: good.sig })).status).to.equal(200);
    const url2 = 'http://127.0.0.1:9/third.ts';
    expect((await request(t.app).head(`/stream/${md5(url2)}`).query({ url: url2, api_token: TOKEN })).status).to.equal(200);
    const ids = (await request(t.app).get('/streams').set('X-API-Token', TOKEN)).body.streams.map((s: { stream_id: string }) => s.stream_id);
    expect(ids).to.include.members([id, md5(url2)]);
  });
});
