// A real Prometheus server scrapes a running two-worker cluster every second while a
// workload exercises every panel: a live channel with viewers on both workers, a transcode
// slower than real time, a failing upstream that fails over, a stalled viewer. Then every
// expression of every dashboard panel and every alert signal must return at least one
// series through Prometheus's query API, and every metric name they use must be exported.
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startCluster, type TestCluster } from './support/cluster.js';
import { alertExprs, dashboardExprs, RULES_FILE, signals } from './support/grafana-exprs.js';
import { startOrigin, type Origin } from './support/origin.js';
import { leakyLabels, parseSamples } from './support/prom-text.js';
import { report } from './support/report.js';
import { openViewer, waitFor, type TsViewer } from './support/ts-viewer.js';

const TOKEN = 'prometheus-test-token-93ab';
const PASSWORD = 'upstream-s3cret';
const USER_AGENT = 'PromTestPlayer/2.0';
const AUTH = { 'X-API-Token': TOKEN };
const ENCODE = '-i {input_url} -c:v libx264 -preset ultrafast -tune zerolatency -s 160x120 -g 25 -c:a aac -b:a 48k {output_args}';

interface QueryResult {
  status: string;
  data: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
  error?: string;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** Metric names as written in an expression (histogram series kept as `_bucket`). */
const rawNames = (expr: string): string[] => [...new Set(expr.match(/\b(m3u_proxy|process|nodejs)_[a-z0-9_]+\b/g) ?? [])];

describe('metrics: a real Prometheus scraping a cluster under load', function () {
  this.timeout(180_000);
  let origin: Origin;
  let cluster: TestCluster;
  let prometheus: ChildProcess | null = null;
  let promLog = '';
  let dir = '';
  let promBase = '';
  const viewers: TsViewer[] = [];

  const query = async (expr: string): Promise<QueryResult> => {
    const res = await fetch(`${promBase}/api/v1/query?query=${encodeURIComponent(expr)}`);
    return (await res.json()) as QueryResult;
  };

  before(async function () {
    this.timeout(120_000);
    dir = await mkdtemp(path.join(os.tmpdir(), 'm3u-proxy-prometheus-'));
    [origin, cluster] = await Promise.all([
      startOrigin(),
      startCluster({
        WORKERS: '2', API_TOKEN: TOKEN, SHARED_STREAM_GRACE: '2',
        STREAM_RETRY_ATTEMPTS: '1', STREAM_RETRY_DELAY: '0.2', VIEWER_STALL_TIMEOUT: '2',
        // Viewers stay on the worker they land on, so the relay series have a relay to show.
        VIEWER_HANDOFF: 'false',
      }, 90_000),
    ]);
    const port = await freePort();
    promBase = `http://127.0.0.1:${port}`;
    await writeFile(path.join(dir, 'token'), TOKEN);
    // The token as Prometheus sends it from a file: `Authorization: Bearer`.
    await writeFile(path.join(dir, 'prometheus.yml'), [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      `rule_files: ['${RULES_FILE}']`,
      'scrape_configs:',
      '  - job_name: m3u-proxy',
      `    authorization: { credentials_file: '${path.join(dir, 'token')}' }`,
      `    static_configs: [{ targets: ['127.0.0.1:${cluster.port}'] }]`,
      '',
    ].join('\n'));
    prometheus = spawn('prometheus', [
      `--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn',
    ], { stdio: ['ignore', 'pipe', 'pipe'] });
    prometheus.stdout!.on('data', (c: Buffer) => (promLog += c.toString()));
    prometheus.stderr!.on('data', (c: Buffer) => (promLog += c.toString()));
    await waitFor(async () => {
      const r = await query('up{job="m3u-proxy"} == 1').catch(() => null);
      return (r?.data.result.length ?? 0) === 1;
    }, 60_000, `Prometheus to scrape the cluster (log: ${promLog})`);
  });

  after(async () => {
    for (const v of viewers) v.close();
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((r) => prometheus!.once('exit', r));
      prometheus.kill('SIGTERM');
      const t = setTimeout(() => prometheus!.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    }
    await cluster?.stop();
    await origin?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('every panel expression and every alert signal returns series; every name used is exported; no label leaks', async () => {
    const api = async <T>(p: string, body: unknown): Promise<T> => {
      const res = await cluster.api<T>(p, { method: 'POST', headers: AUTH, body: JSON.stringify(body) });
      expect(res.status, JSON.stringify(res.body)).to.equal(200);
      return res.body;
    };
    const watch = (id: string): TsViewer => {
      const v = openViewer(cluster.url(`/stream/${id}`), { headers: { 'User-Agent': USER_AGENT } });
      viewers.push(v);
      return v;
    };

    // A live channel with viewers on both workers (the URL carries a password).
    const live = (await api<{ stream_id: string }>('/streams', { url: origin.url('/live/prom-live.ts').replace('http://', `http://u:${PASSWORD}@`) })).stream_id;
    const workers = new Set<string>();
    for (let i = 0; i < 8 && workers.size < 2; i++) {
      const v = watch(live);
      workers.add(String((await v.headers)['x-worker-id']));
      await v.firstBytes(188);
    }
    expect(workers.size, 'viewers on both workers').to.equal(2);
    // A transcode fed at half the real rate: FFmpeg runs below real time.
    const tx = (await api<{ stream_id: string }>('/transcode', { url: origin.url('/live/prom-tx.ts?speed=0.5'), profile: ENCODE })).stream_id;
    const txViewer = watch(tx);
    // A failing upstream that fails over to a working one, and one that only fails.
    const failing = (await api<{ stream_id: string }>('/streams', {
      url: origin.url('/status/503'), failover_urls: [origin.url('/live/prom-failover.ts')],
    })).stream_id;
    await watch(failing).firstBytes(188);
    const dead = (await api<{ stream_id: string }>('/streams', { url: origin.url('/status/404') })).stream_id;
    expect(await watch(dead).status).to.equal(502);
    // A viewer that stops reading (a fast stream fills the socket buffers soon): dropped as stalled.
    const fast = (await api<{ stream_id: string }>('/streams', { url: origin.url('/live/prom-fast.ts?speed=24') })).stream_id;
    const slow = watch(fast);
    await slow.firstBytes(188);
    slow.pause();
    await txViewer.firstBytes(188 * 20);

    const signalsOf = alertExprs().flatMap((a) => signals(a.expr).map((expr) => ({ where: a.where, expr })));
    const all = [...dashboardExprs('30s'), ...signalsOf];
    const empty = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const e of all) {
        const r = await query(e.expr);
        expect(r.status, `${e.where}: ${e.expr}: ${r.error}`).to.equal('success');
        if (r.data.result.length === 0) out.push(`${e.where}: ${e.expr}`);
      }
      return out;
    };
    let missing: string[] = [];
    // (A paused player sees its close only once it reads again: the server's count tells.)
    const stalled = async (): Promise<number> =>
      Number((await query('sum(m3u_proxy_viewer_departures_total{reason="stalled"})')).data.result[0]?.value[1] ?? 0);
    const waited = await waitFor(async () => (missing = await empty()).length === 0 && (await stalled()) >= 1, 60_000, 'every expression to return series and the stalled viewer to go')
      .catch((err: Error) => {
        throw new Error(`${err.message}; still empty:\n${missing.join('\n')}`);
      });
    report('dashboard and alert expressions checked live', `${all.length} (all returned series after ${waited} ms of workload)`);

    // An alert on live data: the half-speed transcode makes its rule pending (for: 2m).
    await waitFor(async () => (await query('ALERTS{alertname="M3uProxyTranscodeBelowRealTime"}')).data.result.length > 0, 20_000, 'the transcode-below-real-time alert to be pending');

    // Every name an expression uses is one the service exports (as Prometheus stored it).
    const names = await (await fetch(`${promBase}/api/v1/label/__name__/values`)).json() as { data: string[] };
    const exported = new Set(names.data);
    const unknown = all.flatMap((e) => rawNames(e.expr).filter((n) => !exported.has(n)).map((n) => `${e.where}: ${n}`));
    expect(unknown, 'names the service does not export').to.deep.equal([]);

    // The live scrape, with all of this running: no URL, IP, token, password or user agent in a label.
    const text = await (await fetch(cluster.url('/metrics'), { headers: AUTH })).text();
    expect(leakyLabels(parseSamples(text), [TOKEN, PASSWORD, USER_AGENT])).to.deep.equal([]);
    expect(text).not.to.include(PASSWORD);
  });
});
