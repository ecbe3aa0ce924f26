// The container image, built from the repository's Dockerfile and run with podman, as users
// run it: health check, a live stream played with ffprobe, /metrics, SIGTERM drain.
// Not in `npm test`'s glob (it builds an image: minutes); `npm run test:container` and CI run it.
// The base image node:20-bookworm-slim is made locally (scripts/container/base-image.sh) when
// no registry is reachable, so the Dockerfile is the one users build.
import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { httpRequest } from '../support/http-request.js';
import { startOrigin, type Origin } from '../support/origin.js';
import { podman, REPO_ROOT, RUN_FLAGS, runCommand, runStreaming } from '../support/podman.js';
import { report } from '../support/report.js';
import { openViewer, sleep, waitFor } from '../support/ts-viewer.js';

const execFileAsync = promisify(execFile);
const IMAGE = process.env.M3U_TEST_IMAGE ?? 'localhost/m3u-proxy:test';
const CONTAINER = `m3u-proxy-test-${process.pid}`;
const DRAIN_TIMEOUT_S = 5;
const TOKEN = randomBytes(16).toString('hex');

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

interface ProcInfo {
  pid: number;
  ppid: number;
  uid: number;
  cmd: string;
}

/** Every process in the container, read from /proc with the image's own node. */
async function containerProcesses(): Promise<ProcInfo[]> {
  const script = `
    const fs = require('fs');
    const out = [];
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\\d+$/.test(d)) continue;
      try {
        const status = fs.readFileSync('/proc/' + d + '/status', 'utf8');
        const cmd = fs.readFileSync('/proc/' + d + '/cmdline', 'utf8').split('\\0').filter(Boolean).join(' ');
        out.push({ pid: +d, ppid: +/PPid:\\s+(\\d+)/.exec(status)[1], uid: +/Uid:\\s+(\\d+)/.exec(status)[1], cmd });
      } catch {}
    }
    console.log(JSON.stringify(out));`;
  return JSON.parse(await podman(['exec', CONTAINER, 'node', '-e', script])) as ProcInfo[];
}

describe('container image (podman)', function () {
  // Building the image is the slow part: on a box that never built it, the base image
  // (debootstrap, ~3.5 min, cached in /var/cache/m3u-proxy) and apt-get + npm ci (~10 min on a
  // loaded 2-core box); with podman's layer cache, a source change rebuilds in 1–6 min.
  this.timeout(45 * 60_000);
  let origin: Origin;
  let port: number;
  let base: string;
  const auth = { 'X-API-Token': TOKEN };

  before(async function () {
    const made = await runStreaming('bash', ['scripts/container/base-image.sh'], 15 * 60_000);
    if (made.code !== 0) throw new Error(`base image failed:\n${made.tail}`);

    const started = Date.now();
    const built = await runStreaming(
      'podman',
      ['build', '--format', 'docker', ...RUN_FLAGS, '-t', IMAGE, REPO_ROOT],
      25 * 60_000,
    );
    if (built.code !== 0) throw new Error(`podman build failed:\n${built.tail}`);
    report('podman build (layer cache as left by earlier runs)', `${((Date.now() - started) / 1000).toFixed(0)} s`);
    const size = Number(await podman(['image', 'inspect', '--format', '{{.Size}}', IMAGE]));
    report('image size', `${(size / 1e6).toFixed(0)} MB`);
    report('base image size', `${(Number(await podman(['image', 'inspect', '--format', '{{.Size}}', 'node:20-bookworm-slim'])) / 1e6).toFixed(0)} MB`);

    origin = await startOrigin();
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    await runCommand('podman', ['rm', '-f', CONTAINER], 30_000);
    await podman([
      'run', '-d', '--name', CONTAINER, ...RUN_FLAGS,
      '-e', 'HOST=127.0.0.1', '-e', `PORT=${port}`, '-e', `API_TOKEN=${TOKEN}`,
      '-e', 'WORKERS=2', '-e', `DRAIN_TIMEOUT=${DRAIN_TIMEOUT_S}`, '-e', 'SHARED_STREAM_GRACE=1',
      IMAGE,
    ]);
  });

  after(async function () {
    await runCommand('podman', ['rm', '-f', '-t', '0', CONTAINER], 60_000);
    await origin?.close();
  });

  it('passes its HEALTHCHECK, which sends API_TOKEN to /health', async function () {
    // No systemd timer runs health checks here; `podman healthcheck run` runs the image's
    // HEALTHCHECK command once inside the container and records the result.
    let last = '';
    await waitFor(async () => {
      const r = await runCommand('podman', ['healthcheck', 'run', CONTAINER], 30_000);
      last = `${r.code} ${r.stdout}${r.stderr}`.trim();
      if (r.code !== 0) await sleep(1000);
      return r.code === 0;
    }, 120_000, `a passing health check (last: ${last})`);
    const status = (await podman(['inspect', '--format', '{{.State.Health.Status}}', CONTAINER])).trim();
    expect(status).to.equal('healthy');
    // The command must have sent the token: /health itself refuses a request without it.
    expect((await httpRequest(`${base}/health`)).status).to.equal(401);
    // Healthy means serving (one worker is enough); the second worker may still be starting
    // on a loaded box, so wait for it rather than read the first answer.
    let workers: unknown;
    await waitFor(async () => {
      workers = JSON.parse((await httpRequest(`${base}/health`, { headers: auth })).body.toString()).workers;
      if ((workers as { alive: number }).alive !== 2) await sleep(500);
      return (workers as { alive: number }).alive === 2;
    }, 60_000, 'both workers alive');
    expect(workers).to.deep.equal({ expected: 2, alive: 2 });
  });

  it('runs as a non-root user, tini as PID 1, the primary its child with 2 workers', async function () {
    const procs = await containerProcesses();
    const init = procs.find((p) => p.pid === 1);
    expect(init?.cmd).to.match(/^\/usr\/bin\/tini -- node dist\/src\/index\.js$/);
    const primary = procs.filter((p) => p.ppid === 1 && p.cmd === 'node dist/src/index.js');
    expect(primary, JSON.stringify(procs)).to.have.length(1);
    const workers = procs.filter((p) => p.ppid === primary[0]!.pid && p.cmd.endsWith('dist/src/index.js'));
    expect(workers, JSON.stringify(procs)).to.have.length(2);
    for (const p of [init!, primary[0]!, ...workers]) expect(p.uid, p.cmd).to.equal(1000);
  });

  it('serves a live stream from a local origin that ffprobe plays, one upstream for two players', async function () {
    const created = await httpRequest(`${base}/streams`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ url: origin.url('/live.ts'), metadata: { id: 'container-test' } }),
    });
    expect(created.status, created.body.toString()).to.be.oneOf([200, 201]);
    const { stream_id: id } = JSON.parse(created.body.toString()) as { stream_id: string };

    const probe = (): Promise<{ stdout: string }> =>
      execFileAsync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_type,codec_name', '-of', 'json', `${base}/stream/${id}`], { timeout: 60_000 });
    const [a, b] = await Promise.all([probe(), probe()]);
    for (const out of [a, b]) {
      const streams = (JSON.parse(out.stdout) as { streams: Array<{ codec_type: string; codec_name: string }> }).streams;
      expect(streams.map((s) => `${s.codec_type}:${s.codec_name}`)).to.include.members(['video:h264', 'audio:aac']);
    }
    // Both players shared the proxy's one upstream request.
    expect(origin.totalRequests('/live.ts')).to.equal(1);
    // The last player gone, the upstream closes after SHARED_STREAM_GRACE.
    await origin.waitForClosedAll('/live.ts', 30_000);
  });

  it('serves /metrics with the token (X-API-Token or bearer), 401 without', async function () {
    const res = await httpRequest(`${base}/metrics`, { headers: auth });
    expect(res.status).to.equal(200);
    expect(String(res.headers['content-type'])).to.match(/^text\/plain/);
    expect(res.body.toString()).to.match(/^# TYPE m3u_proxy_/m);
    expect((await httpRequest(`${base}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } })).status).to.equal(200);
    expect((await httpRequest(`${base}/metrics`)).status).to.equal(401);
  });

  it("is scraped by Prometheus with compose's deploy/prometheus.yml and loads grafana/alerts", async function () {
    // The compose file's Prometheus settings with local paths: the token file, the rules, this
    // container as the target, a 1 s interval.
    const dir = mkdtempSync(path.join(os.tmpdir(), 'm3u-prometheus-'));
    const promPort = await freePort();
    const edits: Array<[string | RegExp, string]> = [
      ['/prometheus/api_token', path.join(dir, 'api_token')],
      ['/etc/prometheus/alerts/', `${path.join(REPO_ROOT, 'grafana', 'alerts')}/`],
      ["'m3u-proxy:8085'", `'127.0.0.1:${port}'`],
      [/scrape_interval: 15s/, 'scrape_interval: 1s'],
    ];
    let config = readFileSync(path.join(REPO_ROOT, 'deploy', 'prometheus.yml'), 'utf8');
    for (const [from, to] of edits) {
      const found = typeof from === 'string' ? config.includes(from) : from.test(config);
      expect(found, `deploy/prometheus.yml has ${String(from)}`).to.equal(true);
      config = config.replace(from, to);
    }
    writeFileSync(path.join(dir, 'api_token'), TOKEN);
    writeFileSync(path.join(dir, 'prometheus.yml'), config);
    const prometheus = spawn('prometheus', [
      `--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ], { stdio: 'ignore' });
    const exited = new Promise((r) => prometheus.once('exit', r));
    try {
      const api = async (q: string): Promise<any> => {
        const r = await httpRequest(`http://127.0.0.1:${promPort}/api/v1/${q}`).catch(() => null);
        return r?.status === 200 ? JSON.parse(r.body.toString()).data : null;
      };
      let last = 'no answer';
      await waitFor(async () => {
        const targets = await api('targets');
        const t = targets?.activeTargets?.[0];
        if (t) last = `${t.health} ${t.lastError}`;
        if (t?.health !== 'up') await sleep(500);
        return t?.health === 'up';
      }, 60_000, `the m3u-proxy target up in Prometheus (last: ${last})`);
      const rules = await api('rules');
      expect(rules.groups.flatMap((g: { rules: unknown[] }) => g.rules)).to.have.length.above(0);
    } finally {
      prometheus.kill('SIGTERM');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('rolls its workers on SIGHUP to the container: new worker pids, same primary, still healthy', async function () {
    const workersOf = (procs: ProcInfo[]): { primary: number; workers: number[] } => {
      const primary = procs.find((p) => p.ppid === 1 && p.cmd === 'node dist/src/index.js')!.pid;
      return { primary, workers: procs.filter((p) => p.ppid === primary).map((p) => p.pid) };
    };
    const before = workersOf(await containerProcesses());
    expect(before.workers).to.have.length(2);
    await podman(['kill', '--signal', 'HUP', CONTAINER]);
    await waitFor(async () => {
      const done = (await podman(['logs', CONTAINER])).includes('rolling restart done');
      if (!done) await sleep(500);
      return done;
    }, 120_000, 'the primary logging "rolling restart done"');
    const after = workersOf(await containerProcesses());
    expect(after.primary).to.equal(before.primary);
    expect(after.workers).to.have.length(2);
    for (const pid of after.workers) expect(before.workers).to.not.include(pid);
    expect((await httpRequest(`${base}/health`, { headers: auth })).status).to.equal(200);
  });

  it('drains on SIGTERM to the container and exits 0 within DRAIN_TIMEOUT', async function () {
    const created = await httpRequest(`${base}/streams`, {
      method: 'POST',
      headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ url: origin.url('/live/drain.ts') }),
    });
    const { stream_id: id } = JSON.parse(created.body.toString()) as { stream_id: string };
    const viewer = openViewer(`${base}/stream/${id}`);
    expect(await viewer.status).to.equal(200);
    await viewer.firstBytes(188 * 100);

    const sent = Date.now();
    await podman(['kill', '--signal', 'TERM', CONTAINER]);
    const code = Number((await podman(['wait', CONTAINER], (DRAIN_TIMEOUT_S + 60) * 1000)).trim());
    const elapsedS = (Date.now() - sent) / 1000;
    report('SIGTERM to container exit', `${elapsedS.toFixed(1)} s (DRAIN_TIMEOUT=${DRAIN_TIMEOUT_S})`);
    expect(code).to.equal(0);
    // The primary's own kill deadline is DRAIN_TIMEOUT plus a margin; podman adds its teardown.
    expect(elapsedS).to.be.below(DRAIN_TIMEOUT_S + 15);
    const logs = await podman(['logs', CONTAINER]);
    const lines = logs.split('\n');
    expect(lines.some((l) => l.includes('primary stopping') && l.includes('SIGTERM')), 'the primary got SIGTERM').to.equal(true);
    expect(lines.some((l) => l.includes('primary stopped')), 'the primary finished its drain').to.equal(true);
    await viewer.closed;
    expect(viewer.misaligned()).to.equal(0);
    await origin.waitForClosedAll('/live/drain.ts', 10_000);
  });
});
