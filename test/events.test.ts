import { expect } from 'chai';
import request from 'supertest';
import { MemoryCoordinator } from '../src/coordination/memory-coordinator.js';
import { createLogger } from '../src/logger.js';
import { envelope } from '../src/streams/events/stream-events.js';
import { WebhookDispatcher } from '../src/streams/events/webhook-dispatcher.js';
import { startCluster, type TestCluster } from './support/cluster.js';
import { tsByteRate, makeLiveTs } from './support/media.js';
import { startOrigin, type Origin } from './support/origin.js';
import { testApp } from './support/proxy.js';
import { report } from './support/report.js';
import { openViewer, sleep, waitFor, type TsViewer } from './support/ts-viewer.js';
import { startSink, type Sink } from './support/webhook-sink.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const ISO_Z = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;
const EDITOR_EVENTS = ['stream_started', 'stream_stopped', 'client_connected', 'client_disconnected'];

const workerOf = async (v: TsViewer): Promise<string> => String((await v.headers)['x-worker-id']);

describe('webhooks: registration (API.md §5.1)', function () {
  this.timeout(20_000);
  let sink: Sink;
  let t: ReturnType<typeof testApp>;
  before(async () => {
    sink = await startSink();
  });
  beforeEach(() => {
    t = testApp();
  });
  afterEach(async () => t.close());
  after(async () => sink.close());

  it("the editor's sequence: GET, DELETE with a JSON body, POST with its four events, timeout 5, retry_attempts 2", async () => {
    const hook = sink.url('/ok/editor');
    // A registration left from the editor's previous run.
    expect((await request(t.app).post('/webhooks').send({ url: hook })).status).to.equal(200);
    const listed = await request(t.app).get('/m3u-proxy/webhooks');
    expect(listed.status).to.equal(200);
    expect(listed.body.webhooks).to.deep.equal([{ url: hook, events: [
      'stream_started', 'stream_stopped', 'stream_failed', 'client_connected', 'client_disconnected', 'failover_triggered',
    ], timeout: 10, retry_attempts: 3 }]);
    const del = await request(t.app).delete('/m3u-proxy/webhooks').send({ webhook_url: hook });
    expect(del.status, JSON.stringify(del.body)).to.equal(200);
    expect(del.body.message).to.be.a('string');
    const post = await request(t.app).post('/m3u-proxy/webhooks')
      .send({ url: hook, events: EDITOR_EVENTS, timeout: 5, retry_attempts: 2 });
    expect(post.status).to.equal(200);
    expect(post.body).to.deep.include({ webhook_url: hook, events: EDITOR_EVENTS });
    expect((await request(t.app).get('/webhooks')).body.webhooks)
      .to.deep.equal([{ url: hook, events: EDITOR_EVENTS, timeout: 5, retry_attempts: 2 }]);
    // The query form of DELETE works too; a second delete is a 404.
    expect((await request(t.app).delete(`/webhooks?webhook_url=${encodeURIComponent(hook)}`)).status).to.equal(200);
    const again = await request(t.app).delete(`/webhooks?webhook_url=${encodeURIComponent(hook)}`);
    expect(again.status).to.equal(404);
    expect(again.body.code).to.equal('WEBHOOK_NOT_FOUND');
  });

  it('bad registrations are 422 JSON naming the field', async () => {
    const cases: Array<[unknown, string]> = [
      [{}, 'url'],
      [{ url: 'file:///etc/passwd' }, 'url'],
      [{ url: sink.url('/ok/x'), events: ['stream_exploded'] }, 'events.0'],
      [{ url: sink.url('/ok/x'), timeout: 0 }, 'timeout'],
      [{ url: sink.url('/ok/x'), retry_attempts: -1 }, 'retry_attempts'],
      [{ url: sink.url('/ok/x'), headers: { 'Bad Name': 'x' } }, 'headers.Bad Name'],
    ];
    for (const [body, field] of cases) {
      const res = await request(t.app).post('/webhooks').send(body as object);
      expect(res.status, JSON.stringify(body)).to.equal(422);
      expect(res.body.code).to.equal('VALIDATION_ERROR');
      expect(res.body.errors.map((e: { field: string }) => e.field)).to.include(field);
    }
    const noUrl = await request(t.app).delete('/webhooks');
    expect(noUrl.status).to.equal(422);
    expect(noUrl.body.errors[0].field).to.equal('webhook_url');
  });

  it('POST /webhooks/test sends one stream_started for test_stream_123 in the §5.1 envelope', async () => {
    await request(t.app).post('/webhooks').send({ url: sink.url('/ok/test'), headers: { 'X-Secret': 's1' } });
    const res = await request(t.app).post(`/webhooks/test?webhook_url=${encodeURIComponent(sink.url('/ok/test'))}`);
    expect(res.status).to.equal(200);
    expect(res.body.event_id).to.match(UUID);
    const got = sink.on('/ok/test');
    expect(got).to.have.length(1);
    expect(got[0]!.headers['user-agent']).to.equal('M3U-Proxy-Webhook/1.0');
    expect(got[0]!.headers['x-secret']).to.equal('s1');
    expect(got[0]!.headers['content-type']).to.match(/^application\/json/);
    expect(got[0]!.body).to.include({ event_id: res.body.event_id, event_type: 'stream_started', stream_id: 'test_stream_123' });
    expect(got[0]!.body.timestamp).to.match(ISO_Z);
  });
});

describe('webhooks: delivery queue', function () {
  this.timeout(20_000);
  let sink: Sink;
  before(async () => {
    sink = await startSink();
  });
  after(async () => sink.close());

  it('retries a 500 up to retry_attempts more times; a hanging endpoint holds a bounded queue and drops the rest, counted', async () => {
    const coordinator = new MemoryCoordinator();
    const logger = createLogger({ level: 'error', format: 'json', silent: true });
    const d = new WebhookDispatcher({ coordinator, logger, queueLimit: 5, concurrency: 1, backoffMs: () => 50 });
    const now = new Date().toISOString();
    await coordinator.putWebhook({ url: sink.url('/fail/q'), events: ['stream_failed'], headers: {}, timeout: 2, retryAttempts: 2, createdAt: now });
    await coordinator.putWebhook({ url: sink.url('/hang/q'), events: ['client_connected'], headers: {}, timeout: 15, retryAttempts: 0, createdAt: now });
    await coordinator.putWebhook({ url: sink.url('/ok/q'), events: [], headers: {}, timeout: 2, retryAttempts: 0, createdAt: now });
    try {
      d.dispatch(envelope('stream_failed', 's1', {}));
      await sink.waitFor('3 POSTs to the failing hook', () => sink.on('/fail/q').length === 3);
      // The good hook keeps up and gets all 20, while the hanging one holds 1 in flight + 5 queued.
      for (let i = 0; i < 20; i++) {
        d.dispatch(envelope('client_connected', 's1', { n: i }));
        await sink.waitFor(`event ${i} at the good hook`, () => sink.events('/ok/q', 'client_connected').length === i + 1);
      }
      const stats = d.stats();
      expect(stats.dropped).to.equal(14);
      expect(sink.on('/hang/q')).to.have.length(1);
      expect(stats.failed).to.be.at.least(1); // the stream_failed after 3 tries
      await sleep(200);
      expect(sink.on('/fail/q')).to.have.length(3 + 0); // not one more than 1 + retry_attempts
    } finally {
      d.close();
      await coordinator.close();
    }
  });
});

describe('events once per cluster (WORKERS=2)', function () {
  this.timeout(60_000);
  let origin: Origin;
  let sink: Sink;
  let cluster: TestCluster;
  const hook = (): string => sink.url('/ok/cluster');

  before(async () => {
    origin = await startOrigin();
    sink = await startSink();
    // Heartbeats every 2 s: on a loaded box a 0.5 s beat can miss the sweep's 3 intervals, and
    // a swept worker's viewer records vanish (which would end the run early, rightly).
    cluster = await startCluster({
      WORKERS: '2', SHARED_STREAM_GRACE: '1', LEASE_TTL_MS: '2000', HEARTBEAT_INTERVAL: '2', CLEANUP_INTERVAL: '5',
      // Viewers on both workers are the point (events once per cluster): none moves to the owner.
      VIEWER_HANDOFF: 'false',
    }, 60_000); // a loaded box starts workers slowly
    const reg = await cluster.api('/webhooks', {
      method: 'POST', body: JSON.stringify({ url: hook(), events: EDITOR_EVENTS, timeout: 5, retry_attempts: 2 }),
    });
    expect(reg.status).to.equal(200);
    // Registrations are cluster-wide: every worker lists it.
    for (let i = 0; i < 4; i++) {
      expect((await cluster.api<{ webhooks: unknown[] }>('/webhooks')).body.webhooks).to.have.length(1);
    }
  });
  after(async () => {
    await cluster?.stop();
    await sink.close();
    await origin.close();
  });

  const create = async (path: string, metadata: Record<string, unknown>): Promise<string> => {
    const res = await cluster.api<{ stream_id: string }>('/streams', { method: 'POST', body: JSON.stringify({ url: origin.url(path), metadata }) });
    return res.body.stream_id;
  };

  const viewersOnBothWorkers = async (id: string, n: number): Promise<TsViewer[]> => {
    const viewers = Array.from({ length: n }, () => openViewer(cluster.url(`/stream/${id}`)));
    expect(await Promise.all(viewers.map((v) => v.status))).to.deep.equal(Array(n).fill(200));
    expect(new Set(await Promise.all(viewers.map(workerOf))).size, 'viewers on both workers').to.equal(2);
    await waitFor(() => viewers.every((v) => v.bytes() > 188 * 100), 15_000, 'every viewer to play');
    return viewers;
  };

  it('each lifecycle event reaches the sink once, in the §5.1 envelope; stream_stopped right after the last viewer leaves', async () => {
    const id = await create('/live/events-once.ts', { id: 7, provider_profile_id: 3 });
    const viewers = await viewersOnBothWorkers(id, 4);
    await sink.waitFor('4 client_connected', () => sink.events('/ok/cluster', 'client_connected').filter((e) => e.stream_id === id).length === 4);
    // Leave one by one; the stream stops only when the cluster-wide count reaches 0.
    for (const v of viewers.slice(0, 3)) v.close();
    await sleep(1500);
    expect(sink.events('/ok/cluster', 'stream_stopped').filter((e) => e.stream_id === id)).to.have.length(0);
    const lastLeft = Date.now();
    viewers[3]!.close();
    await sink.waitFor('stream_stopped', () => sink.events('/ok/cluster', 'stream_stopped').some((e) => e.stream_id === id), 5000);
    const stoppedAt = sink.on('/ok/cluster').find((r) => r.body.event_type === 'stream_stopped' && r.body.stream_id === id)!.at;
    report('stream_stopped at the sink after the last viewer left (ms)', stoppedAt - lastLeft);
    expect(stoppedAt - lastLeft, 'a second or two, not after the grace or a sweep').to.be.below(3000);
    await sleep(1500); // anything duplicated would have arrived by now

    const mine = sink.events('/ok/cluster').filter((e) => e.stream_id === id);
    const count = (type: string): number => mine.filter((e) => e.event_type === type).length;
    expect({ started: count('stream_started'), stopped: count('stream_stopped'), connected: count('client_connected'), disconnected: count('client_disconnected') })
      .to.deep.equal({ started: 1, stopped: 1, connected: 4, disconnected: 4 });
    expect(new Set(mine.map((e) => e.event_id)).size).to.equal(mine.length);
    for (const e of mine) {
      expect(e.event_id).to.match(UUID);
      expect(e.timestamp).to.match(ISO_Z);
      expect(e.data.metadata).to.deep.include({ provider_profile_id: '3', id: '7' });
    }
    // Each worker delivers its own events concurrently, so arrival order at the sink is not the
    // order of events; their timestamps are (one clock on this box). The run starts before any
    // viewer leaves, and stops after every viewer joined.
    const at = (type: string): number[] => mine.filter((e) => e.event_type === type).map((e) => Date.parse(String(e.timestamp)));
    const started = mine.find((e) => e.event_type === 'stream_started')!;
    expect(Date.parse(String(started.timestamp)), 'stream_started before any client_disconnected').to.be.at.most(Math.min(...at('client_disconnected')));
    const stopped = mine.find((e) => e.event_type === 'stream_stopped')!;
    expect(Date.parse(String(stopped.timestamp)), 'stream_stopped after every client_connected').to.be.at.least(Math.max(...at('client_connected')));
    expect(stopped.data.reason).to.equal('last_client_disconnected');
    const workers = new Set(mine.filter((e) => e.event_type === 'client_connected').map((e) => e.data.worker_id));
    expect(workers.size).to.equal(2);
    const lat = sink.on('/ok/cluster').filter((r) => r.body.stream_id === id).map((r) => r.at - Date.parse(String(r.body.timestamp)));
    report('webhook delivery latency, event timestamp → sink (ms, max of this stream)', Math.max(...lat));
    // A new viewer later is a new run: stream_started again.
    const again = openViewer(cluster.url(`/stream/${id}`));
    await sink.waitFor('a second stream_started', () => sink.events('/ok/cluster', 'stream_started').filter((e) => e.stream_id === id).length === 2);
    again.close();
    await sink.waitFor('a second stream_stopped', () => sink.events('/ok/cluster', 'stream_stopped').filter((e) => e.stream_id === id).length === 2);
  });

  it('a deletion while viewers play on both workers sends one stream_stopped with its reason, none for the departures', async () => {
    const id = await create('/live/events-delete.ts', { id: 8, provider_profile_id: 4 });
    const viewers = await viewersOnBothWorkers(id, 4);
    const del = await cluster.api(`/streams/${id}`, { method: 'DELETE' });
    expect(del.status).to.equal(200);
    await Promise.all(viewers.map((v) => v.closed));
    await sink.waitFor('4 client_disconnected', () => sink.events('/ok/cluster', 'client_disconnected').filter((e) => e.stream_id === id).length === 4);
    await sleep(1000);
    const stops = sink.events('/ok/cluster', 'stream_stopped').filter((e) => e.stream_id === id);
    expect(stops.map((e) => e.data.reason)).to.deep.equal(['manual_deletion']);
    expect(stops[0]!.data.metadata).to.deep.include({ provider_profile_id: '4' });
  });

  it('a webhook that hangs and one that answers 500 are retried as configured and never slow the fan-out', async () => {
    const hang = sink.url('/hang/slow');
    const fail = sink.url('/fail/slow');
    for (const url of [hang, fail]) {
      await cluster.api('/webhooks', { method: 'POST', body: JSON.stringify({ url, timeout: 2, retry_attempts: 1 }) });
    }
    const rate = await tsByteRate(await makeLiveTs());
    const id = await create('/live/events-slow.ts', { id: 9 });
    const viewers = await viewersOnBothWorkers(id, 4);
    try {
      await sink.waitFor('the failing hook to be called', () => sink.on('/fail/slow').length > 0);
      const before = viewers.map((v) => v.bytes());
      const t0 = Date.now();
      await sleep(4000);
      const secs = (Date.now() - t0) / 1000;
      const perViewer = viewers.map((v, i) => (v.bytes() - before[i]!) / secs / rate);
      report('viewer byte rate while webhooks hang or fail (x source rate, min)', Math.min(...perViewer).toFixed(2));
      for (const r of perViewer) expect(r).to.be.above(0.8);
      for (const v of viewers) expect(v.misaligned()).to.equal(0);
    } finally {
      viewers.forEach((v) => v.close());
    }
    await sleep(4000);
    // Every event was POSTed 1 + retry_attempts times to the failing hook, never more.
    const failIds = sink.on('/fail/slow').map((r) => String(r.body.event_id));
    const perEvent = new Map<string, number>();
    for (const e of failIds) perEvent.set(e, (perEvent.get(e) ?? 0) + 1);
    expect([...perEvent.values()].every((n) => n <= 2)).to.equal(true);
    expect([...perEvent.values()].filter((n) => n === 2).length).to.be.at.least(4);
    for (const url of [hang, fail]) {
      await cluster.api('/webhooks', { method: 'DELETE', body: JSON.stringify({ webhook_url: url }) });
    }
  });
});
