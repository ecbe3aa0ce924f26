// /metrics on the real product: a cluster of two workers aggregated through the primary, and
// the one-process mode. Checked with promtool, with viewers and a transcode live.
import { expect } from 'chai';
import { startCluster, type TestCluster } from './support/cluster.js';
import { startHlsOrigin } from './support/hls-origin.js';
import { startOrigin, type Origin } from './support/origin.js';
import { familyNames, leakyLabels, parseSamples, promtool, sumOf, type Sample } from './support/prom-text.js';
import { openViewer, waitFor, type TsViewer } from './support/ts-viewer.js';
import { ALL_DEFINITIONS } from '../src/metrics/definitions.js';
import { TsPacketizer } from '../src/streams/mpegts/ts-packets.js';

const TOKEN = 'metrics-test-token-5f1c';
const PASSWORD = 'pr0vider-passw0rd';
const USER_AGENT = 'MetricsTestPlayer/7.1 (Linux; TV)';
const AUTH = { 'X-API-Token': TOKEN };
const ENCODE = '-i {input_url} -c:v libx264 -preset ultrafast -tune zerolatency -s 160x120 -g 25 -c:a aac -b:a 48k {output_args}';

/** A TS packet on `pid` with continuity counter `cc` (payload only unless `adaptation` is given). */
function packet(pid: number, cc: number, adaptation?: { discontinuity?: boolean; payload?: boolean }): Buffer {
  const b = Buffer.alloc(188, 0xff);
  b[0] = 0x47;
  b[1] = (pid >> 8) & 0x1f;
  b[2] = pid & 0xff;
  if (!adaptation) {
    b[3] = 0x10 | cc;
  } else {
    b[3] = ((adaptation.payload === false ? 0x2 : 0x3) << 4) | cc;
    b[4] = 1;
    b[5] = adaptation.discontinuity ? 0x80 : 0;
  }
  return b;
}

describe('metrics: continuity counters', () => {
  it('counts packets lost per PID, not duplicates, flagged discontinuities, adaptation-only or null packets', () => {
    const p = new TsPacketizer();
    const run = (...pkts: Buffer[]): number => {
      p.push(Buffer.concat(pkts));
      return p.ccErrors;
    };
    expect(run(packet(0x100, 0), packet(0x100, 1), packet(0x101, 7), packet(0x100, 2), packet(0x101, 8))).to.equal(0);
    expect(run(packet(0x100, 2)), 'a duplicate').to.equal(0);
    expect(run(packet(0x100, 3, { payload: false }), packet(0x100, 3)), 'adaptation only: the counter does not advance').to.equal(0);
    expect(run(packet(0x100, 15), packet(0x100, 0)), 'a gap of 11 on 0x100, then the wrap 15 → 0').to.equal(1);
    expect(run(packet(0x101, 2, { discontinuity: true })), 'discontinuity_indicator set').to.equal(1);
    expect(run(packet(0x1fff, 9), packet(0x1fff, 3)), 'null packets').to.equal(1);
    expect(run(packet(0x101, 4), packet(0x100, 5)), 'one gap on each PID').to.equal(3);
  });
});

describe('metrics: /metrics of a two-worker cluster', function () {
  this.timeout(120_000);
  let origin: Origin;
  let cluster: TestCluster;
  const viewers: TsViewer[] = [];

  before(async function () {
    this.timeout(120_000);
    origin = await startOrigin();
    cluster = await startCluster({
      WORKERS: '2', API_TOKEN: TOKEN, SHARED_STREAM_GRACE: '0.5',
      // Viewers stay on the worker they land on: the sums below need viewers on both workers,
      // and the hand-off (test/viewer-handoff.test.ts) would move every one to the owner once
      // the workers' load reports arrived (the test passed only while they had not).
      VIEWER_HANDOFF: 'false',
    }, 60_000);
  });

  after(async () => {
    for (const v of viewers) v.close();
    await cluster?.stop();
    await origin?.close();
  });

  const scrape = async (path = '/metrics'): Promise<{ text: string; samples: Sample[] }> => {
    const res = await fetch(cluster.url(path), { headers: AUTH });
    expect(res.status).to.equal(200);
    expect(res.headers.get('content-type')).to.match(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    return { text, samples: parseSamples(text) };
  };

  const create = async (url: string): Promise<string> => {
    const res = await cluster.api<{ stream_id: string }>('/streams', { method: 'POST', body: JSON.stringify({ url }), headers: AUTH });
    expect(res.status).to.equal(200);
    return res.body.stream_id;
  };

  it('needs the API token: 401 without, 403 with a wrong one, 200 with it (header, query or bearer), under ROOT_PATH too', async () => {
    const none = await fetch(cluster.url('/metrics'));
    expect(none.status).to.equal(401);
    expect(((await none.json()) as { code: string }).code).to.equal('AUTH_REQUIRED');
    const wrong = await fetch(cluster.url('/metrics'), { headers: { 'X-API-Token': 'nope' } });
    expect(wrong.status).to.equal(403);
    expect(((await wrong.json()) as { code: string }).code).to.equal('AUTH_INVALID');
    // Prometheus's `authorization.credentials_file` sends a bearer token.
    expect((await fetch(cluster.url('/metrics'), { headers: { Authorization: `Bearer ${TOKEN}` } })).status).to.equal(200);
    expect((await fetch(cluster.url('/metrics'), { headers: { Authorization: 'Bearer nope' } })).status).to.equal(403);
    const { samples } = await scrape('/m3u-proxy/metrics');
    expect(sumOf(samples, 'm3u_proxy_workers_running')).to.equal(2);
    expect(sumOf(samples, 'm3u_proxy_workers_expected')).to.equal(2);
  });

  it('every worker answers with the whole host: both workers and the primary in one scrape', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const res = await fetch(cluster.url('/metrics'), { headers: AUTH });
      seen.add(String(res.headers.get('x-worker-id')));
      const samples = parseSamples(await res.text());
      const workers = new Set(samples.filter((s) => s.name === 'process_resident_memory_bytes').map((s) => s.labels.worker));
      expect([...workers].sort()).to.deep.equal(['1', '2', 'primary']);
    }
    expect(seen.size, 'requests answered by both workers').to.equal(2);
  });

  it('viewers on both workers: the per-stream gauge sums to the true total, follows departures, and the stream\'s series go when it stops', async () => {
    const url = origin.url('/live/metrics-sum.ts').replace('http://', `http://user:${PASSWORD}@`);
    const id = await create(url);
    const workers = new Set<string>();
    for (let i = 0; i < 8 && (viewers.length < 4 || workers.size < 2); i++) {
      const v = openViewer(cluster.url(`/stream/${id}`), { headers: { 'User-Agent': USER_AGENT } });
      expect(await v.status).to.equal(200);
      workers.add(String((await v.headers)['x-worker-id']));
      await v.firstBytes(188);
      viewers.push(v);
    }
    expect(workers.size, 'viewers on both workers').to.equal(2);
    const total = viewers.length;
    const viewersOf = async (): Promise<number> => sumOf((await scrape()).samples, 'm3u_proxy_stream_viewers', { stream_id: id });
    await waitFor(async () => (await viewersOf()) === total, 10_000, `${total} viewers in the gauge`);

    const { samples, text } = await scrape();
    expect(samples.filter((s) => s.name === 'm3u_proxy_stream_viewers' && s.labels.stream_id === id), 'one series, summed over workers').to.have.length(1);
    expect(sumOf(samples, 'm3u_proxy_streams', { state: 'owner' })).to.equal(1);
    expect(sumOf(samples, 'm3u_proxy_streams', { state: 'relay' })).to.equal(1);
    expect(sumOf(samples, 'm3u_proxy_relay_connections', { direction: 'serving' })).to.equal(1);
    expect(sumOf(samples, 'm3u_proxy_sources_owned')).to.equal(1);
    expect(sumOf(samples, 'm3u_proxy_viewer_joins_total')).to.be.at.least(total);
    expect(sumOf(samples, 'm3u_proxy_stream_egress_bytes_total', { stream_id: id })).to.be.greaterThan(188 * total);
    expect(sumOf(samples, 'm3u_proxy_stream_upstream_bytes_total', { stream_id: id })).to.be.greaterThan(0);
    expect(sumOf(samples, 'm3u_proxy_time_to_first_byte_seconds_count', { start: 'cold' })).to.be.at.least(1);
    expect(sumOf(samples, 'm3u_proxy_time_to_first_byte_seconds_count', { start: 'warm' })).to.be.at.least(1);
    expect(leakyLabels(samples, [TOKEN, PASSWORD, USER_AGENT, 'user:'])).to.deep.equal([]);
    expect(text).not.to.include(PASSWORD);

    viewers.pop()!.close();
    await waitFor(async () => (await viewersOf()) === total - 1, 10_000, 'the gauge to follow a departure');
    expect(sumOf((await scrape()).samples, 'm3u_proxy_viewer_departures_total', { reason: 'closed' })).to.be.at.least(1);

    for (const v of viewers.splice(0)) v.close();
    await waitFor(async () => !(await scrape()).samples.some((s) => s.labels.stream_id === id), 15_000, `every series of ${id} to go`);
  });

  it('counts HLS viewers (pollers, not sockets) in the per-stream gauge and the stream as owned', async () => {
    const hlsOrigin = await startHlsOrigin();
    try {
      const id = await create(hlsOrigin.url('/hls/v1/media.m3u8'));
      for (const client of ['h1', 'h2']) {
        const res = await fetch(cluster.url(`/hls/${id}/playlist.m3u8?client_id=${client}`), { headers: { 'User-Agent': USER_AGENT } });
        expect(res.status).to.equal(200);
        await res.arrayBuffer();
      }
      await waitFor(async () => sumOf((await scrape()).samples, 'm3u_proxy_stream_viewers', { stream_id: id }) === 2, 10_000, '2 HLS viewers in the gauge');
      const { samples } = await scrape();
      expect(sumOf(samples, 'm3u_proxy_streams', { state: 'owner' })).to.be.at.least(1);
      expect(samples.some((x) => x.name === 'm3u_proxy_stream_cc_errors_total' && x.labels.stream_id === id), 'no TS series for HLS').to.equal(false);
    } finally {
      await hlsOrigin.close();
    }
  });

  it('passes promtool check metrics with viewers and a transcode live, and exports every defined metric', async () => {
    const res = await cluster.api<{ stream_id: string }>('/transcode', {
      method: 'POST', headers: AUTH, body: JSON.stringify({ url: origin.url('/live/metrics-tx.ts'), profile: ENCODE }),
    });
    expect(res.status).to.equal(200);
    const id = res.body.stream_id;
    const v = openViewer(cluster.url(`/stream/${id}`));
    viewers.push(v);
    expect(await v.status).to.equal(200);
    await v.firstBytes(188 * 50);
    const live = await create(origin.url('/live/metrics-check.ts'));
    const w = openViewer(cluster.url(`/stream/${live}`));
    viewers.push(w);
    await w.firstBytes(188);
    let scraped = await scrape();
    await waitFor(async () => {
      scraped = await scrape();
      return scraped.samples.some((s) => s.name === 'm3u_proxy_transcode_speed_ratio' && s.labels.stream_id === id);
    }, 20_000, 'FFmpeg speed in the scrape');

    const check = await promtool(['check', 'metrics'], scraped.text);
    expect(check.output.trim(), 'promtool check metrics').to.equal('');
    expect(check.code).to.equal(0);
    const s = scraped.samples;
    expect(sumOf(s, 'm3u_proxy_ffmpeg_processes')).to.equal(1);
    expect(sumOf(s, 'm3u_proxy_ffmpeg_starts_total')).to.equal(1);
    expect(sumOf(s, 'm3u_proxy_source_viewers', { stream_id: id, slot: '1' })).to.equal(1);
    expect(sumOf(s, 'm3u_proxy_render_task_duration_seconds_count')).to.be.at.least(1);
    expect(sumOf(s, 'm3u_proxy_http_requests_total', { route: '/transcode', method: 'POST', status: '200' })).to.be.at.least(1);
    expect(sumOf(s, 'm3u_proxy_http_requests_total', { route: '/metrics', method: 'GET', status: '401' })).to.be.at.least(1);
    const exported = new Set(familyNames(scraped.text));
    expect(ALL_DEFINITIONS.map((d) => d.name).filter((n) => !exported.has(n)), 'defined but not exported').to.deep.equal([]);
    for (const x of viewers.splice(0)) x.close();
  });

  it('the scrape still answers (the dead worker left out), then counts the restart and both workers again', async () => {
    const [victim] = cluster.workerPids();
    process.kill(victim!, 'SIGKILL');
    // (A connection the primary handed to the dying worker may reset: ask again.)
    const get = (): Promise<Response | null> => fetch(cluster.url('/metrics'), { headers: AUTH, signal: AbortSignal.timeout(10_000) }).catch(() => null);
    await waitFor(async () => (await get())?.status === 200, 20_000, 'a scrape to answer while a worker is dead');
    let samples: Sample[] = [];
    await waitFor(async () => {
      const res = await get();
      if (res?.status !== 200) return false;
      samples = parseSamples(await res.text());
      return sumOf(samples, 'm3u_proxy_worker_restarts_total') === 1 && sumOf(samples, 'm3u_proxy_workers_running') === 2;
    }, 60_000, 'the restart to be counted and the worker back');
    const workers = new Set(samples.filter((x) => x.name === 'process_resident_memory_bytes').map((x) => x.labels.worker));
    expect([...workers].sort()).to.deep.equal(['1', '2', 'primary']);
  });
});

describe('metrics: one-process mode with METRICS_PUBLIC=true', function () {
  this.timeout(60_000);
  let single: TestCluster;
  before(async function () {
    this.timeout(60_000);
    single = await startCluster({ API_TOKEN: TOKEN, METRICS_PUBLIC: 'true' }, 40_000, 'single');
  });
  after(async () => {
    await single?.stop();
  });

  it('serves its own registry without a token while the API still needs one', async () => {
    const res = await fetch(single.url('/metrics'));
    expect(res.status).to.equal(200);
    const text = await res.text();
    const samples = parseSamples(text);
    expect(sumOf(samples, 'm3u_proxy_workers_running')).to.equal(1);
    expect(new Set(samples.filter((x) => x.name === 'process_resident_memory_bytes').map((x) => x.labels.worker))).to.deep.equal(new Set(['1']));
    expect((await promtool(['check', 'metrics'], text)).code).to.equal(0);
    expect((await fetch(single.url('/streams'))).status).to.equal(401);
  });
});
