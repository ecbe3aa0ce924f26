// `npm run chaos`: a bounded chaos run on loopback (issue 18). Its own redis-server, origin and
// viewers; two hosts (two clusters on one Redis, WORKERS=2 each) serving two live channels and
// a shared transcode to viewers on every worker, while faults are injected one after another:
// SIGKILL of workers and SIGSTOP of a stream's owner, Redis restarted with and without its data, host B cut off
// from Redis, upstreams that stall, close and answer 404, slow and vanishing viewers.
// Sampled throughout and asserted at the end:
//   - never two upstream connections (consuming ones, whose client reads: a frozen process's
//     husk is not a source; see Origin.consumingConnections)
//     or two FFmpeg processes (of live parents) for one pool key at the same instant;
//   - viewers on surviving workers never disconnected; their longest media gap per fault kind;
//   - after everything stops: no client record, no lease, no process left;
//   - every worker still serving before the stop.
// Usage: npm run chaos [-- --seconds 180]   (exit code 1 when an assertion fails)
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { fileURLToPath } from 'node:url';
import { isAlive, startCluster, type TestCluster } from '../test/support/cluster.js';
import { startOrigin, type Origin } from '../test/support/origin.js';
import { startRedis, type RedisServer } from '../test/support/redis-server.js';
import { gapMeter, sample, type Sampler } from '../test/support/sampler.js';
import { startTcpProxy, type TcpProxy } from '../test/support/tcp-proxy.js';
import { openViewer, sleep, waitFor, type TsViewer } from '../test/support/ts-viewer.js';

export type FaultKind =
  | 'sigkill' | 'sigstop' | 'redis_restart_empty' | 'redis_restart_data' | 'partition'
  | 'upstream_stall_close_404' | 'slow_and_vanishing_viewers';

export interface ChaosReport {
  seconds: number;
  faults: Record<string, number>;
  /** Longest media gap (ms) of a viewer on a surviving worker, per fault kind. */
  longestGapMs: Record<string, number>;
  /** Times two sources for one key were seen at the same instant (0 expected). */
  duplicateSources: number;
  maxConsumingUpstreams: Record<string, number>;
  maxFfmpeg: number;
  /** Samples that saw more than one source (every 25 ms for upstreams, 500 ms for FFmpeg), by
   *  "<path or ffmpeg> during <fault kind>" (a duplicate after a fault's recovery is filed
   *  under that fault). */
  duplicatesDuring: Record<string, number>;
  /** Viewers on workers that were not killed that lost their connection (0 expected). */
  survivorsDisconnected: number;
  /** Viewers of a worker that was frozen (SIGSTOP) that lost their connection (reported). */
  frozenViewersCut: number;
  /** Viewer departures by reason (m3u_proxy_viewer_departures_total, both hosts) during the
   *  SIGSTOP faults: why the frozen worker's viewers were cut, when they were. */
  departuresDuringSigstop: Record<string, number>;
  clientRecordsLeft: number;
  leasesLeft: number;
  processesLeft: number;
  workersServing: number;
  failures: string[];
}

const PREFIX = 'chaos:';
const COPY = '-i {input_url} -c copy {output_args}';
const LIVE = ['/live/chaos1.ts', '/live/chaos2.ts'];
const TX = '/live/chaos-tx.ts';
const RECOVERY_MS = 8000;

interface Watched {
  viewer: TsViewer;
  host: 'A' | 'B';
  worker: string;
  stream: string;
}

/** Worker pids resumed (SIGCONT) recently, by time: their FFmpeg is killed as they wake. */
const resumedAt = new Map<number, number>();
/** Time a resumed worker gets to be scheduled again and find its lease deadline passed. */
const HUSK_MS = 1000;

/** FFmpeg processes reading `marker` whose worker is not frozen nor just resumed (a frozen
 *  worker's FFmpeg blocks on its full pipe, a husk like its upstream connection, and is
 *  killed by the first thing the worker does when it runs again: read that pipe, find its
 *  lease deadline passed). */
function ffmpegOf(marker: string): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' });
  const pids: number[] = [];
  for (const line of out.split('\n')) {
    const m = /^\s*(\d+)\s+(\d+)\s+(\S+)/.exec(line);
    if (!m || !/(^|\/)ffmpeg$/.test(m[3]!) || !line.includes(marker)) continue;
    const parent = Number(m[2]);
    if (stopped(parent) || Date.now() - (resumedAt.get(parent) ?? 0) < HUSK_MS) continue;
    pids.push(Number(m[1]));
  }
  return pids;
}

function stopped(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
  } catch {
    return false;
  }
}

export async function runChaos(opts: { seconds: number; log?: (line: string) => void; logsTo?: string }): Promise<ChaosReport> {
  const log = opts.log ?? ((l: string) => process.stdout.write(`${l}\n`));
  const rdb = `chaos-${process.pid}.rdb`;
  const rdbPath = path.join(os.tmpdir(), rdb);
  const report: ChaosReport = {
    seconds: opts.seconds, faults: {}, longestGapMs: {}, duplicateSources: 0, maxConsumingUpstreams: {}, maxFfmpeg: 0, duplicatesDuring: {},
    survivorsDisconnected: 0, frozenViewersCut: 0, departuresDuringSigstop: {}, clientRecordsLeft: -1, leasesLeft: -1, processesLeft: -1, workersServing: 0, failures: [],
  };
  let origin: Origin | null = null;
  let redis: RedisServer | null = null;
  let proxy: TcpProxy | null = null;
  let raw: Redis | null = null;
  let a: TestCluster | null = null;
  let b: TestCluster | null = null;
  const watched: Watched[] = [];
  const extras: TsViewer[] = [];
  const samplers: Sampler[] = [];
  const killed = new Set<string>();
  const frozen = new Set<string>();
  const allPids = new Set<number>();
  try {
    origin = await startOrigin();
    redis = await startRedis({ args: ['--dbfilename', rdb] });
    proxy = await startTcpProxy(redis.port);
    raw = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    raw.on('error', () => undefined);
    const env = (host: string, url: string): Record<string, string> => ({
      WORKERS: '2', WORKER_ID: host, REDIS_ENABLED: 'true', REDIS_URL: url, REDIS_KEY_PREFIX: PREFIX,
      SHARED_STREAM_GRACE: '1', LEASE_TTL_MS: '1500', HEARTBEAT_INTERVAL: '0.5', CLEANUP_INTERVAL: '1', DRAIN_TIMEOUT: '3',
      STREAM_RETRY_DELAY: '0.2', STREAM_TOTAL_TIMEOUT: '10', LIVE_CHUNK_TIMEOUT_SECONDS: '5', VIEWER_STALL_TIMEOUT: '4',
    });
    [a, b] = await Promise.all([startCluster(env('chaosA', redis.url), 240_000), startCluster(env('chaosB', proxy.url('redis')), 240_000)]);
    const hosts = { A: a, B: b };
    const api = (c: TestCluster, p: string, body: unknown) => c.api<{ stream_id: string }>(p, { method: 'POST', body: JSON.stringify(body) });
    const ids: Record<string, string> = {};
    for (const p of LIVE) ids[p] = (await api(a, '/streams', { url: origin.url(p) })).body.stream_id;
    ids[TX] = (await api(a, '/transcode', { url: origin.url(TX), profile: COPY })).body.stream_id;
    log(`chaos: 2 hosts x 2 workers, streams ${Object.keys(ids).join(', ')}, ${opts.seconds} s of faults`);

    const watch = async (host: 'A' | 'B', stream: string): Promise<void> => {
      const viewer = openViewer(hosts[host].url(`/stream/${ids[stream]}`));
      const worker = String((await viewer.headers)['x-worker-id'] ?? '');
      watched.push({ viewer, host, worker, stream });
    };
    // Enough viewers that every worker has some of every stream.
    for (const stream of Object.keys(ids)) for (const host of ['A', 'B'] as const) for (let i = 0; i < 4; i++) await watch(host, stream);
    await waitFor(() => watched.every((w) => w.viewer.bytes() > 188 * 100), 180_000, 'every viewer to play');
    const workersOf = new Set(watched.map((w) => w.worker));
    log(`chaos: ${watched.length} viewers on workers ${[...workersOf].sort().join(', ')}`);

    let during = 'start';
    /** A sampled count, with the fault it was seen during noted when it is a duplicate. */
    const noting = (what: string, read: () => number) => (): number => {
      const n = read();
      if (n > 1) report.duplicatesDuring[`${what} during ${during}`] = (report.duplicatesDuring[`${what} during ${during}`] ?? 0) + 1;
      return n;
    };
    for (const p of [...LIVE, TX]) {
      const s = sample(noting(p, () => origin!.consumingConnections(p)), 25);
      samplers.push(s);
      report.maxConsumingUpstreams[p] = 0;
      (s as Sampler & { path?: string }).path = p;
    }
    const ff = sample(noting('ffmpeg', () => ffmpegOf(TX).length), 500);

    const survivors = (): Watched[] => watched.filter((w) => !killed.has(w.worker) && !frozen.has(w.worker) && !w.viewer.isClosed());
    const alive = new Set(watched);
    const noteDisconnects = (): void => {
      for (const w of [...alive]) {
        if (!w.viewer.isClosed()) continue;
        alive.delete(w);
        if (frozen.has(w.worker) && !killed.has(w.worker)) report.frozenViewersCut++;
        else if (!killed.has(w.worker)) {
          report.survivorsDisconnected++;
          report.failures.push(`viewer of ${w.stream} on ${w.worker} (surviving) was disconnected during ${during}`);
        }
      }
    };
    const workerPid = async (host: TestCluster, owner?: string): Promise<{ pid: number; id: string } | null> => {
      const res = await host.api<{ workers: Array<{ worker_id: string; pid: number }> }>('/workers').catch(() => null);
      const own = (res?.body.workers ?? []).filter((w) => w.worker_id.startsWith(owner ?? ''));
      const w = own[Math.floor(Math.random() * own.length)];
      return w ? { pid: w.pid, id: w.worker_id } : null;
    };
    const ownerOf = async (id: string): Promise<{ pid: number; id: string } | null> => {
      const res = await a!.api<{ stream: { owner: { worker_id: string; pid: number } | null } }>(`/streams/${id}`).catch(() => null);
      const owner = res?.body.stream?.owner;
      return owner?.pid ? { pid: owner.pid, id: owner.worker_id } : null;
    };
    for (const c of [a, b]) for (const p of c.workerPids()) allPids.add(p);

    const faults: Array<[FaultKind, () => Promise<void>]> = [
      ['sigkill', async () => {
        const host = Math.random() < 0.5 ? a! : b!;
        const w = await workerPid(host, host === a ? 'chaosA' : 'chaosB');
        if (!w) return;
        killed.add(w.id);
        process.kill(w.pid, 'SIGKILL');
        await sleep(1000);
        for (const p of host.workerPids()) allPids.add(p);
      }],
      ['sigstop', async () => {
        // The owner of a stream (the fault that matters: its lease expires, another worker
        // takes over, then it resumes); any worker of host A when no owner can be read.
        const w = (await ownerOf(ids[Object.keys(ids)[Math.floor(Math.random() * 3)]!]!)) ?? (await workerPid(a!, 'chaosA'));
        if (!w) return;
        // The frozen worker is the faulted one: its own viewers are not survivors.
        frozen.add(w.id);
        process.kill(w.pid, 'SIGSTOP');
        await sleep(6000);
        resumedAt.set(w.pid, Date.now());
        process.kill(w.pid, 'SIGCONT');
      }],
      ['redis_restart_empty', async () => {
        rmSync(rdbPath, { force: true });
        await redis!.restart();
      }],
      ['redis_restart_data', async () => {
        await raw!.save().catch(() => undefined);
        await redis!.restart();
      }],
      ['partition', async () => {
        proxy!.partition();
        await sleep(4000);
        proxy!.heal();
      }],
      ['upstream_stall_close_404', async () => {
        for (const p of ['/stall.ts', '/close-after.ts', '/status/404']) {
          const created = await api(a!, '/streams', { url: origin!.url(p) }).catch(() => null);
          if (!created?.body.stream_id) continue;
          for (const host of [a!, b!]) extras.push(openViewer(host.url(`/stream/${created.body.stream_id}`)));
        }
      }],
      ['slow_and_vanishing_viewers', async () => {
        const slow = openViewer(b!.url(`/stream/${ids[LIVE[0]!]}`));
        slow.pause();
        extras.push(slow);
        for (let i = 0; i < 10; i++) {
          const v = openViewer((i % 2 ? a! : b!).url(`/stream/${ids[LIVE[i % 2]!]}`));
          await sleep(50 + Math.floor(Math.random() * 300));
          v.close();
        }
      }],
    ];

    /** viewer_departures_total by reason, summed over both hosts. */
    const departures = async (): Promise<Record<string, number>> => {
      const out: Record<string, number> = {};
      for (const c of [a!, b!]) {
        const text = await fetch(c.url('/metrics')).then((r) => r.text()).catch(() => '');
        for (const m of text.matchAll(/^m3u_proxy_viewer_departures_total\{[^}]*reason="([a-z_]+)"[^}]*\} (\d+)/gm)) {
          out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[2]);
        }
      }
      return out;
    };
    const end = Date.now() + opts.seconds * 1000;
    let i = 0;
    while (Date.now() < end || i < faults.length) {
      const [kind, inject] = faults[i % faults.length]!;
      i++;
      const meters = survivors().map((w) => ({ w, m: gapMeter(() => w.viewer.bytes()) }));
      const t0 = Date.now();
      const departedBefore = kind === 'sigstop' ? await departures() : null;
      during = kind;
      await inject();
      report.faults[kind] = (report.faults[kind] ?? 0) + 1;
      await sleep(RECOVERY_MS);
      // Viewers of workers killed in this fault are not survivors.
      const gap = Math.max(0, ...meters.filter(({ w }) => !killed.has(w.worker) && !frozen.has(w.worker) && !w.viewer.isClosed()).map(({ m }) => m.stop()));
      meters.forEach(({ m }) => m.stop());
      report.longestGapMs[kind] = Math.max(report.longestGapMs[kind] ?? 0, gap);
      noteDisconnects();
      if (departedBefore) {
        for (const [reason, n] of Object.entries(await departures())) {
          const d = n - (departedBefore[reason] ?? 0);
          if (d > 0) report.departuresDuringSigstop[reason] = (report.departuresDuringSigstop[reason] ?? 0) + d;
        }
      }
      frozen.clear(); // its viewers that stayed are survivors again from the next fault on
      log(`chaos: ${kind} (#${report.faults[kind]}) longest gap ${gap} ms, ${Date.now() - t0} ms`);
      // A killed worker's viewers re-join, as players do.
      for (const w of watched.filter((x) => x.viewer.isClosed() && killed.has(x.worker))) {
        watched.splice(watched.indexOf(w), 1);
        await watch(w.host, w.stream);
        alive.add(watched[watched.length - 1]!);
      }
    }

    for (const s of samplers) {
      const p = (s as Sampler & { path?: string }).path!;
      const max = s.stop();
      report.maxConsumingUpstreams[p] = max;
      if (max > 1) report.duplicateSources++;
    }
    report.maxFfmpeg = ff.stop();
    if (report.maxFfmpeg > 1) report.duplicateSources++;

    // Every worker still serving: a fresh viewer on each host plays, and 4 workers beat.
    const workers = await a.api<{ workers: Array<{ worker_id: string }> }>('/workers').catch(() => null);
    report.workersServing = workers?.body.workers.length ?? 0;
    const fresh = [openViewer(a.url(`/stream/${ids[LIVE[0]!]}`)), openViewer(b.url(`/stream/${ids[LIVE[1]!]}`))];
    await waitFor(() => fresh.every((v) => v.bytes() > 188 * 100), 20_000, 'fresh viewers to play').catch(() => {
      report.failures.push('a fresh viewer did not play after the run');
    });
    extras.push(...fresh);
    noteDisconnects();

    // Everyone leaves: nothing may stay in Redis.
    for (const w of watched) w.viewer.close();
    for (const v of extras) v.close();
    await sleep(4000);
    await waitFor(async () => (await raw!.keys(`${PREFIX}client:*`).catch(() => ['?'])).length === 0, 15_000, 'client records to go').catch(() => undefined);
    report.clientRecordsLeft = (await raw.keys(`${PREFIX}client:*`)).length;
    report.leasesLeft = (await raw.keys(`${PREFIX}lease:*`)).filter((k) => !k.endsWith(':epoch')).length;
    for (const c of [a, b]) for (const p of c.workerPids()) allPids.add(p);
  } finally {
    for (const w of watched) w.viewer.close();
    for (const v of extras) v.close();
    for (const s of samplers) s.stop();
    await Promise.all([a?.stop(30_000), b?.stop(30_000)]);
    raw?.disconnect();
    await proxy?.close();
    await redis?.stop();
    await origin?.close();
    if (existsSync(rdbPath)) rmSync(rdbPath, { force: true });
  }
  await sleep(500);
  const left = [...allPids, a?.pid ?? 0, b?.pid ?? 0].filter((p) => p > 0 && isAlive(p));
  report.processesLeft = left.length + ffmpegOf(TX).length;

  if (report.duplicateSources > 0) report.failures.push(`duplicate sources seen: ${JSON.stringify(report.maxConsumingUpstreams)}, FFmpeg ${report.maxFfmpeg}, ${JSON.stringify(report.duplicatesDuring)}`);
  if (report.clientRecordsLeft !== 0) report.failures.push(`client records left: ${report.clientRecordsLeft}`);
  if (report.leasesLeft !== 0) report.failures.push(`leases left: ${report.leasesLeft}`);
  if (report.processesLeft !== 0) report.failures.push(`processes left: ${report.processesLeft}`);
  if (report.workersServing !== 4) report.failures.push(`workers serving: ${report.workersServing} of 4`);
  if (report.failures.length > 0 && opts.logsTo) {
    const lines = [a, b].flatMap((c) => (c?.logs ?? []).filter((l) => l.level !== 'debug').map((l) => JSON.stringify(l)));
    writeFileSync(opts.logsTo, `${lines.join('\n')}\n`);
  }
  return report;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const i = process.argv.indexOf('--seconds');
  const seconds = i > 0 ? Number(process.argv[i + 1]) : 150;
  const r = await runChaos({ seconds: Number.isFinite(seconds) && seconds > 0 ? seconds : 150, logsTo: path.join(os.tmpdir(), `chaos-warnings-${process.pid}.log`) });
  process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  process.exit(r.failures.length > 0 ? 1 : 0);
}
