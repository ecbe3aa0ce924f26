// Many channels, each with its own upstream (issue 19, target 5), and the cost of a /metrics
// scrape on a busy host (issue 14: < 50 ms for 2,000 viewers on 50 streams). Both use origins
// of their own at lower rates than the fan-out's channel, so the box is not saturated by bytes
// and what is measured is the per-channel and per-scrape cost.
import { performance } from 'node:perf_hooks';
import { LoadClient, type ClientReport } from './client.js';
import { originAt, type Origin } from './origin.js';
import { machineCores, sampleMachine, sampleTree, treeDelta, treeRssKiB } from './proc.js';
import { FloorProcess, ProxyProcess } from './servers.js';
import { atFullRate, fmt, percentile, sleep } from './stats.js';

export interface ChannelsSide {
  server: 'proxy' | 'floor';
  viewers: number;
  connected: number;
  /** Why the others did not connect: the client's failure counts summed over the channels, and each non-200 status seen. */
  failed?: { connect: number; status: number; closed: number; timeout: number; statuses: Record<string, number> };
  /** Viewers at ≥ 0.95× the channel's byte rate over the window. */
  fullRate: number;
  cores: number;
  cpuSPerGB: number;
  machineCores: number;
  /** Process-tree RSS with no viewer (channels created, nothing playing) and at the end of the window (KiB). */
  rssIdleKiB: number;
  rssKiB: number;
  /** Upstream connections open at the origin at the end of the window. */
  upstreams: number;
  /** Proxy only: relay connections between its workers at the end of the window (each worker's heartbeat). */
  relays?: number;
}

export interface ChannelsResult {
  channels: number;
  perChannel: number;
  muxrate: number;
  byteRate: number;
  workers: number;
  sides: ChannelsSide[];
}

export interface ChannelsOptions {
  root: string;
  tmp: string;
  clientBin: string;
  nproc: number;
  channels: number;
  perChannel: number;
  muxrate: number;
  workers: number;
  warmupMs: number;
  windowMs: number;
  log: (msg: string) => void;
}

type Cleanup = Set<() => Promise<void>>;

/** Opens `perChannel` viewers on each path at once (one client group per channel). */
async function openAll(client: LoadClient, port: number, paths: string[], perChannel: number): Promise<number> {
  const opened = await Promise.all(paths.map((p, i) => client.open(`c${i}`, port, p, perChannel, perChannel, 0, 20_000)));
  return opened.reduce((s, o) => s + o.ok, 0);
}

async function measureSide(
  o: ChannelsOptions, origin: Origin, server: ChannelsSide['server'], pid: number, port: number,
  paths: string[], originPaths: string[], relays?: () => Promise<number>,
): Promise<ChannelsSide> {
  const rssIdleKiB = treeRssKiB(sampleTree(pid));
  const client = await LoadClient.start(o.clientBin);
  try {
    const connected = await openAll(client, port, paths, o.perChannel);
    await sleep(o.warmupMs);
    const before = sampleTree(pid);
    const m0 = sampleMachine();
    const t0 = performance.now();
    await client.mark();
    await sleep(o.windowMs);
    const after = sampleTree(pid);
    const m1 = sampleMachine();
    const t1 = performance.now();
    await client.mark();
    const report: ClientReport = await client.report();
    const groups = Object.values(report.groups);
    const bytes = groups.flatMap((g) => g.window_bytes);
    const failed = { connect: 0, status: 0, closed: 0, timeout: 0, statuses: {} as Record<string, number> };
    for (const g of groups) {
      for (const k of ['connect', 'status', 'closed', 'timeout'] as const) failed[k] += g.failed[k];
      for (const st of g.statuses) if (st !== 200) failed.statuses[st] = (failed.statuses[st] ?? 0) + 1;
    }
    const delivered = bytes.reduce((s, b) => s + Math.max(0, b), 0);
    const d = treeDelta(before, after);
    const side: ChannelsSide = {
      server,
      viewers: paths.length * o.perChannel,
      connected,
      failed,
      fullRate: atFullRate(bytes, report.window_s, origin.byteRate),
      cores: d.cpuS / ((t1 - t0) / 1000),
      cpuSPerGB: delivered > 0 ? d.cpuS / (delivered / 1e9) : Number.NaN,
      machineCores: machineCores(m0, m1, o.nproc),
      rssIdleKiB,
      rssKiB: d.rssKiB,
      upstreams: originPaths.reduce((s, p) => s + origin.open(p), 0),
      ...(relays ? { relays: await relays() } : {}),
    };
    o.log(`  ${server.padEnd(5)} ${o.channels} channels × ${o.perChannel}: ${side.fullRate}/${side.viewers} at full rate, ` +
      `${fmt(side.cores, 2)} cores, ${fmt(side.cpuSPerGB, 2)} CPU-s/GB, RSS ${fmt(side.rssKiB / 1024, 0)} MiB (idle ${fmt(rssIdleKiB / 1024, 0)}), upstreams ${side.upstreams}` +
      (side.relays !== undefined ? `, relays between workers ${side.relays}` : '') +
      (connected < side.viewers ? `; not connected ${side.viewers - connected}: ${JSON.stringify(failed)}` : ''));
    return side;
  } finally {
    await client.quit();
  }
}

/**
 * `channels` live channels at `muxrate` with `perChannel` viewers each, every channel its own
 * upstream: the proxy (WORKERS=`workers`) against the floor with the same number of upstreams.
 */
export async function runChannels(o: ChannelsOptions, cleanup: Cleanup): Promise<ChannelsResult> {
  const origin = await originAt(o.tmp, 'channels', o.muxrate, cleanup);
  const proxy = new ProxyProcess(`channels WORKERS=${o.workers}`, o.root, { WORKERS: String(o.workers) });
  const floor = new FloorProcess(o.root);
  const stops = [proxy, floor].map((s) => () => s.stop());
  for (const stop of stops) cleanup.add(stop);
  try {
    await Promise.all([proxy.start(), floor.start(origin.url('/live/fl-idle.ts'))]);
    const idx = Array.from({ length: o.channels }, (_, i) => i);
    const pxOrigin = idx.map((i) => `/live/px-${i}.ts`);
    const ids: string[] = [];
    for (const p of pxOrigin) ids.push((await proxy.api<{ stream_id: string }>('POST', '/streams', { url: origin.url(p) })).stream_id);
    await sleep(1000);
    const sides = [
      await measureSide(o, origin, 'proxy', proxy.pid, proxy.port, ids.map((id) => `/stream/${id}`), pxOrigin, async () => {
        const { workers } = await proxy.api<{ workers: Array<{ relays: { receiving: number } }> }>('GET', '/workers');
        return workers.reduce((n, w) => n + w.relays.receiving, 0);
      }),
      await measureSide(o, origin, 'floor', floor.pid, floor.port, idx.map((i) => `/stream/fl-${i}`), idx.map((i) => `/live/fl-${i}.ts`)),
    ];
    return { channels: o.channels, perChannel: o.perChannel, muxrate: o.muxrate, byteRate: origin.byteRate, workers: o.workers, sides };
  } finally {
    for (const s of [proxy, floor]) await s.stop();
    for (const stop of stops) cleanup.delete(stop);
  }
}

export interface ScrapeResult {
  streams: number;
  viewers: number;
  connected: number;
  workers: number;
  scrapes: number;
  /** Wall time of GET /metrics as Prometheus sees it (ms), and the body size. */
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
  bytes: number;
  series: number;
  machineCores: number;
}

/**
 * A host with `viewers` viewers spread over `streams` live streams (WORKERS=`workers`), and
 * `scrapes` GETs of /metrics 250 ms apart while they play.
 */
export async function runScrape(
  o: Pick<ChannelsOptions, 'root' | 'tmp' | 'clientBin' | 'nproc' | 'workers' | 'log'> & { streams: number; viewers: number; muxrate: number; scrapes: number },
  cleanup: Cleanup,
): Promise<ScrapeResult> {
  const origin = await originAt(o.tmp, 'scrape', o.muxrate, cleanup);
  const proxy = new ProxyProcess(`scrape WORKERS=${o.workers}`, o.root, { WORKERS: String(o.workers) });
  const stop = () => proxy.stop();
  cleanup.add(stop);
  const client = await LoadClient.start(o.clientBin);
  try {
    await proxy.start();
    const ids: string[] = [];
    for (let i = 0; i < o.streams; i++) ids.push((await proxy.api<{ stream_id: string }>('POST', '/streams', { url: origin.url(`/live/scrape-${i}.ts`) })).stream_id);
    const per = Math.ceil(o.viewers / o.streams);
    const opened = await Promise.all(ids.map((id, i) => client.open(`s${i}`, proxy.port, `/stream/${id}`, per, 10, 50, 20_000)));
    await sleep(3000);
    const headers: Record<string, string> = process.env.API_TOKEN ? { 'X-API-Token': process.env.API_TOKEN } : {};
    const wall: number[] = [];
    let body = '';
    const m0 = sampleMachine();
    for (let i = 0; i < o.scrapes; i++) {
      const t0 = performance.now();
      const res = await fetch(`${proxy.base}/metrics`, { headers, signal: AbortSignal.timeout(10_000) });
      body = await res.text();
      if (!res.ok) throw new Error(`/metrics → ${res.status}`);
      wall.push(performance.now() - t0);
      await sleep(250);
    }
    const m1 = sampleMachine();
    const r: ScrapeResult = {
      streams: o.streams, viewers: per * o.streams, connected: opened.reduce((s, x) => s + x.ok, 0), workers: o.workers, scrapes: o.scrapes,
      p50Ms: percentile(wall, 50), p95Ms: percentile(wall, 95), maxMs: Math.max(...wall), bytes: body.length,
      series: body.split('\n').filter((l) => l && !l.startsWith('#')).length,
      machineCores: machineCores(m0, m1, o.nproc),
    };
    o.log(`  /metrics with ${r.connected} viewers on ${r.streams} streams: p50 ${fmt(r.p50Ms, 1)} ms, p95 ${fmt(r.p95Ms, 1)} ms, ${r.series} series, ${fmt(r.bytes / 1024, 0)} KiB`);
    return r;
  } finally {
    await client.quit();
    await proxy.stop();
    cleanup.delete(stop);
  }
}
