// `npm run bench` (`npm run bench -- --quick`): the proxy's fan-out, join, relay and transcode
// costs, each measured against a bare Node fan-out (the floor) in the same run, interleaved
// (proxy N, proxy×2 N, floor N, then the next N), and written to BENCHMARKS.md.
//
// Everything binds 127.0.0.1 on free ports; every loop is bounded in count and time; every
// process the bench starts is stopped before it exits (also on Ctrl-C).
//
// Options: --quick            50/200/400 viewers, 4 s windows (under 3 minutes)
//          --max <n>          cap on the viewer ladder (default 4800)
//          --profile / --no-profile   CPU-profile a loaded worker (default: on for full runs)
//          --out <file>       the markdown file (default BENCHMARKS.md at the repo root)
//          --rate <bit/s>     the channel's mux rate (default 8000000)
//          --ladder <n,n,…>   viewer counts instead of the default ladder
//          --render <json>    rewrite the markdown section from a saved bench/results/*.json
//          --only <a,b>       run only these sections (fanout, background, cold, profile,
//                             transcode, memory, channels, scrape, overload); results go to
//                             bench/results/<mode>-partial.json, not to the markdown
//          --knee <n>         overload: measure past this knee (default: found by a ladder on the proxy's CPU)
//          --before <rev>     also measure the proxy as built at <rev> (WORKERS=2, interleaved
//                             with the others at every N): a before/after in the same run
//          --after <rev>      measure the proxy as built at <rev> instead of this checkout
//                             (with --before: one change isolated, both built the same way)
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { buildBefore, type BeforeTree } from './before.js';
import { runChannels, runScrape, type ChannelsResult, type ScrapeResult } from './channels.js';
import { buildClient, LoadClient, type ClientReport, type GroupReport } from './client.js';
import { pinPlan, runOverload, type OverloadStep } from './overload.js';
import { originAt, type Origin } from './origin.js';
import { runMemoryCycles, type MemoryResult } from './memory.js';
import { busiestProfile, type ProfileSummary } from './profile.js';
import { connectionsByPid, ioBytes, machineCores, sampleMachine, sampleTree, treeDelta, treeRssKiB, type ProcSample } from './proc.js';
import { FloorProcess, ProxyProcess } from './servers.js';
import { atFullRate, fmt, FULL_RATE, median, pct, percentile, ratio, sleep } from './stats.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

// ---------------------------------------------------------------------------------------
// Options

interface Options {
  quick: boolean;
  maxViewers: number;
  /** Overload: this knee instead of the one the ladder found (for --only overload). */
  knee: number | null;
  profile: boolean;
  out: string;
  muxrate: number;
  only: Set<string> | null;
  ladder: number[] | null;
  before: string | null;
  after: string | null;
}

const SECTIONS = ['fanout', 'background', 'cold', 'profile', 'transcode', 'memory', 'channels', 'scrape', 'overload'];

function parseArgs(argv: string[]): Options {
  const o: Options = { quick: false, maxViewers: 4800, profile: false, out: path.join(ROOT, 'BENCHMARKS.md'), muxrate: 8_000_000, only: null, ladder: null, before: null, after: null, knee: null };
  let profileSet = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--quick') o.quick = true;
    else if (a === '--max') o.maxViewers = Number(next());
    else if (a === '--profile') (o.profile = true), (profileSet = true);
    else if (a === '--no-profile') (o.profile = false), (profileSet = true);
    else if (a === '--out') o.out = path.resolve(next());
    else if (a === '--rate') o.muxrate = Number(next());
    else if (a === '--before') o.before = next();
    else if (a === '--after') o.after = next();
    else if (a === '--knee') o.knee = Number(next());
    else if (a === '--ladder') o.ladder = next().split(',').map(Number).filter((n) => n > 0);
    else if (a === '--only') {
      o.only = new Set(next().split(','));
      for (const x of o.only) if (!SECTIONS.includes(x)) throw new Error(`--only: unknown section ${x} (${SECTIONS.join(', ')})`);
    }
    else throw new Error(`unknown option ${a}`);
  }
  if (!profileSet) o.profile = !o.quick;
  if (!(o.maxViewers >= 1) || !(o.muxrate >= 1_000_000)) throw new Error('bad --max or --rate');
  return o;
}

/** Everything that differs between a quick and a full run. */
interface Plan {
  ladder: number[];
  warmupMs: number;
  windowMs: number;
  probes: number;
  coldRepeats: number;
  transcodeLadder: number[];
  transcodeWarmupMs: number;
  transcodeWindowMs: number;
  /** Stop starting new fan-out steps after this much wall time (ms since start). */
  fanoutBudgetMs: number;
  /** Memory over a lifetime: cycles of this many viewers joining and leaving a new stream. */
  memoryCycles: number;
  memoryViewers: number;
  /** The fan-out step measured again beside a light CPU load (another process at ~30 % of a core). */
  backgroundN: number;
  /** Many channels: this many at `channelMuxrate`, each with `perChannel` viewers. */
  channels: number;
  perChannel: number;
  channelMuxrate: number;
  /** The /metrics scrape: this many viewers over this many streams (1 Mbit/s each). */
  scrapeStreams: number;
  scrapeViewers: number;
  /** Overload: the knee's viewers plus this many times the knee in all. */
  overloadFactors: number[];
  /** Overload with the proxy pinned to one CPU: the N tried to find its knee there. */
  overloadKneeLadder: number[];
}

function planFor(o: Options): Plan {
  const full = [50, 200, 400, 800, 1200, 1600, 2000, 2400, 3200, 4000, 4800];
  const quick = [50, 200, 400];
  const ladder = (o.ladder ?? (o.quick ? quick : full)).filter((n) => n <= o.maxViewers);
  // Full runs: a 12 s warm-up (a saturated worker degrades after seconds, not at once) and a
  // 12 s window with the warm-join probes spread over it (joins while the N play).
  return o.quick
    ? { ladder, warmupMs: 2000, windowMs: 4000, probes: 10, coldRepeats: 3, transcodeLadder: [1, 5], transcodeWarmupMs: 2000, transcodeWindowMs: 4000, fanoutBudgetMs: 180_000, memoryCycles: 3, memoryViewers: 200,
      backgroundN: 400, channels: 20, perChannel: 3, channelMuxrate: 4_000_000, scrapeStreams: 10, scrapeViewers: 400, overloadFactors: [1.5], overloadKneeLadder: [200, 400] }
    : { ladder, warmupMs: 12_000, windowMs: 12_000, probes: 20, coldRepeats: 7, transcodeLadder: [1, 5, 10], transcodeWarmupMs: 5000, transcodeWindowMs: 10_000, fanoutBudgetMs: 20 * 60_000, memoryCycles: 5, memoryViewers: 1000,
      backgroundN: 1200, channels: 200, perChannel: 3, channelMuxrate: 4_000_000, scrapeStreams: 50, scrapeViewers: 2000, overloadFactors: [1.5, 2], overloadKneeLadder: [1600, 2000, 2400, 2800, 3200, 3600, 4000] };
}

// Viewers connect in batches: a burst of 1,000+ connects at once measures the accept queue,
// not the fan-out.
const BATCH = 100;
const BATCH_INTERVAL_MS = 100;
/** A client above this share of one core may be what limits a figure: flagged. */
const CLIENT_SATURATED = 0.9;
const TRANSCODE_TEMPLATE = '-i {input_url} -c:v libx264 -preset ultrafast -s 640x360 -c:a aac {output_args}';

// ---------------------------------------------------------------------------------------
// Measurements

type ServerKey = 'proxy1' | 'proxy2' | 'before' | 'floor';

interface Target {
  key: ServerKey;
  label: string;
  port: number;
  pid: number;
  /** The floor's fixed channel; a proxy gets a new stream per step (created, then deleted). */
  path?: string;
  originPath?: string;
  proxy?: ProxyProcess;
  baselineRssKiB: number;
}

/** The stream one step plays: a new one on a proxy (deleted after), so the ladder is also several runs in one process lifetime. */
async function stepStream(ctx: Ctx, t: Target, tag: string): Promise<{ path: string; originPath: string; done: () => Promise<void> }> {
  if (!t.proxy) return { path: t.path!, originPath: t.originPath!, done: async () => undefined };
  const originPath = `/live/${t.key}-${tag}.ts`;
  const proxy = t.proxy;
  const { stream_id: id } = await proxy.api<{ stream_id: string }>('POST', '/streams', { url: ctx.origin.url(originPath) });
  return { path: `/stream/${id}`, originPath, done: () => proxy.api('DELETE', `/streams/${id}`).then(() => undefined) };
}

/** A light CPU load beside the servers: one process busy ~30 % of each 100 ms. */
function startBackgroundLoad(): { stop: () => void } {
  const script = 'const busy=()=>{const t=Date.now();while(Date.now()-t<30){}};setInterval(busy,100);process.stdin.on("end",()=>process.exit(0));process.stdin.resume();';
  const proc = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'ignore', 'ignore'] });
  return { stop: () => proc.kill('SIGKILL') };
}

interface Latency {
  n: number;
  p50: number;
  p95: number;
  max: number;
  first47: number;
  firstPat: number;
}

interface ProcessRole {
  role: string;
  pid: number;
  cores: number;
  viewers?: number;
  ownsSource?: boolean;
}

interface FanoutResult {
  server: ServerKey;
  n: number;
  windowS: number;
  connected: number;
  fullRate: number;
  share: number;
  meanRateBps: number;
  deliveredBytes: number;
  serverCpuS: number;
  serverCores: number;
  cpuSPerGB: number;
  rssKiB: number;
  rssPerViewerKiB: number;
  /** Tree RSS before this step's viewers connected (the ladder's earlier steps' streams deleted). */
  rssIdleKiB: number;
  /** Measured beside a light CPU load (startBackgroundLoad). */
  background: boolean;
  machineCores: number;
  clientCores: number;
  upstreamOpen: number;
  batchJoin: Latency;
  warmJoin: Latency;
  failed: GroupReport['failed'];
  processes: ProcessRole[];
  /** Cores the primary used over the window (it hosts the embedded coordinator). */
  primaryCores: number;
  /** Bytes/s the primary read + wrote over the window: the coordinator's IPC traffic. */
  primaryIoBps: number;
}

function latency(g: GroupReport | undefined): Latency {
  const t = g?.ttfb_ms ?? [];
  return { n: g?.n ?? 0, p50: percentile(t, 50), p95: percentile(t, 95), max: t.length ? Math.max(...t) : Number.NaN, first47: g?.first_0x47 ?? 0, firstPat: g?.first_pat ?? 0 };
}

/**
 * Labels the processes of a tree (the root: primary or floor; node workers; FFmpeg) with
 * their CPU over the window, their viewers and whether they hold the upstream GET.
 */
function roles(target: Target, before: ProcSample[], after: ProcSample[], seconds: number, originPort: number): ProcessRole[] {
  const d = treeDelta(before, after);
  const conns = connectionsByPid(after.map((s) => s.pid), target.port, originPort);
  const out: ProcessRole[] = [];
  let w = 0;
  for (const s of after) {
    const cpu = d.perPid.get(s.pid)?.cpuS ?? 0;
    const c = conns.get(s.pid);
    const base = { pid: s.pid, cores: cpu / seconds, viewers: c?.viewers, ownsSource: c ? c.upstreams > 0 : undefined };
    if (s.pid === target.pid) out.push({ role: target.proxy ? 'primary' : 'floor', ...base });
    else if (s.comm === 'ffmpeg') out.push({ role: 'ffmpeg', ...base });
    else out.push({ role: `worker ${++w}`, ...base });
  }
  return out;
}

interface Ctx {
  opts: Options;
  plan: Plan;
  origin: Origin;
  clientBin: string;
  nproc: number;
  started: number;
  log: (msg: string) => void;
  /** `--before`: the built tree of the earlier commit. */
  before: BeforeTree | null;
  /** Where the proxies under test run from: this checkout, or the `--after` tree. */
  proxyRoot: string;
}

/**
 * One fan-out step: a new stream (on a proxy), N viewers, a warm-up, a measured window with
 * warm-join probes spread over it, then the stream deleted. `background`: beside a light CPU load.
 */
async function measureFanout(ctx: Ctx, target: Target, n: number, background = false): Promise<FanoutResult> {
  const { plan, origin } = ctx;
  const rssIdleKiB = treeRssKiB(sampleTree(target.pid));
  const stream = await stepStream(ctx, target, `${n}${background ? '-bg' : ''}-${Date.now()}`);
  const load = background ? startBackgroundLoad() : null;
  const client = await LoadClient.start(ctx.clientBin);
  try {
    const opened = await client.open('main', target.port, stream.path, n, BATCH, BATCH_INTERVAL_MS, 15_000);
    await sleep(plan.warmupMs);
    const before = sampleTree(target.pid);
    const io0 = ioBytes(target.pid);
    const m0 = sampleMachine();
    const t0 = performance.now();
    await client.mark();
    // Warm joins: one viewer at a time into the running channel, spread over the window
    // while the N play (a join right after a quiet moment says less).
    const probing = client.open('probe', target.port, stream.path, plan.probes, 1, Math.floor(plan.windowMs / plan.probes), 10_000);
    await sleep(plan.windowMs);
    const after = sampleTree(target.pid);
    const io1 = ioBytes(target.pid);
    const m1 = sampleMachine();
    const t1 = performance.now();
    await client.mark();
    await probing;
    const upstreamOpen = origin.open(stream.originPath);
    const seconds = (t1 - t0) / 1000;
    const processes = roles(target, before, after, seconds, origin.port);
    const report: ClientReport = await client.report();
    const main = report.groups.main!;
    const win = report.window_s;
    const full = atFullRate(main.window_bytes, win, origin.byteRate);
    const delivered = main.window_bytes.reduce((s, b) => s + Math.max(0, b), 0);
    const d = treeDelta(before, after);
    const r: FanoutResult = {
      server: target.key,
      n,
      windowS: win,
      connected: opened.ok,
      fullRate: full,
      share: full / n,
      meanRateBps: delivered / n / win,
      deliveredBytes: delivered,
      serverCpuS: d.cpuS,
      serverCores: d.cpuS / seconds,
      cpuSPerGB: delivered > 0 ? d.cpuS / (delivered / 1e9) : Number.NaN,
      rssKiB: d.rssKiB,
      rssPerViewerKiB: (d.rssKiB - target.baselineRssKiB) / n,
      rssIdleKiB,
      background,
      machineCores: machineCores(m0, m1, ctx.nproc),
      clientCores: report.client_cpu_s / win,
      upstreamOpen,
      batchJoin: latency(main),
      warmJoin: latency(report.groups.probe),
      failed: main.failed,
      processes,
      primaryCores: processes.find((p) => p.role === 'primary')?.cores ?? Number.NaN,
      primaryIoBps: target.proxy ? (io1 - io0) / seconds : Number.NaN,
    };
    ctx.log(
      `  ${target.label.padEnd(22)} n=${String(n).padStart(4)}  full-rate ${pct(r.share).padStart(6)}  ` +
        `server ${fmt(r.serverCores, 2)} cores  ${fmt(r.cpuSPerGB, 2)} CPU-s/GB  machine ${fmt(r.machineCores, 2)}  ` +
        `client ${fmt(r.clientCores, 2)}  warm join p95 ${fmt(r.warmJoin.p95, 1)} ms  upstream ${upstreamOpen}${background ? '  (background load)' : ''}`,
    );
    return r;
  } finally {
    await client.quit();
    load?.stop();
    await stream.done().catch((err: unknown) => ctx.log(`  ${target.label}: deleting the step's stream failed: ${String(err)}`));
  }
}

/** Time to first byte of one fresh viewer (`open` of a single connection). */
async function firstByte(client: LoadClient, group: string, port: number, p: string): Promise<{ ms: number; first47: boolean; firstPat: boolean }> {
  await client.open(group, port, p, 1, 1, 0, 15_000);
  const g = (await client.report()).groups[group]!;
  await client.close(group);
  return { ms: g.ttfb_ms[0] ?? Number.NaN, first47: g.first_0x47 === 1, firstPat: g.first_pat === 1 };
}

interface ColdResult {
  server: ServerKey;
  proxyMs: number[];
  directMs: number[];
  overheadMs: number[];
  firstPat: number;
  /**
   * WORKERS=2 only: two first viewers of a new stream at once, which the cluster's round-robin
   * accept gives to both workers: the slower one (the one on the worker that is not the owner
   * and relays) over the direct GET.
   */
  pairOverheadMs?: number[];
}

/**
 * Cold start: the first viewer of a stream nobody watches (a new URL each time) against a
 * direct GET of the origin right before it. The difference is what the proxy adds.
 */
async function measureCold(ctx: Ctx, target: Target, tag: string): Promise<ColdResult> {
  const client = await LoadClient.start(ctx.clientBin);
  const res: ColdResult = { server: target.key, proxyMs: [], directMs: [], overheadMs: [], firstPat: 0 };
  try {
    for (let i = 0; i < ctx.plan.coldRepeats; i++) {
      const url = ctx.origin.url(`/live/cold-${tag}-${i}.ts`);
      const { stream_id: id } = await target.proxy!.api<{ stream_id: string }>('POST', '/streams', { url });
      const direct = await firstByte(client, `d${i}`, ctx.origin.port, `/live/direct-${tag}-${i}.ts`);
      const cold = await firstByte(client, `c${i}`, target.port, `/stream/${id}`);
      res.directMs.push(direct.ms);
      res.proxyMs.push(cold.ms);
      res.overheadMs.push(cold.ms - direct.ms);
      if (cold.firstPat) res.firstPat++;
      if (target.key === 'proxy2') {
        const { stream_id: pairId } = await target.proxy!.api<{ stream_id: string }>('POST', '/streams', { url: ctx.origin.url(`/live/cold-pair-${tag}-${i}.ts`) });
        const pairDirect = await firstByte(client, `pd${i}`, ctx.origin.port, `/live/direct-pair-${tag}-${i}.ts`);
        await client.open(`p${i}`, target.port, `/stream/${pairId}`, 2, 2, 0, 15_000);
        const t = (await client.report()).groups[`p${i}`]!.ttfb_ms;
        await client.close(`p${i}`);
        (res.pairOverheadMs ??= []).push((t.length === 2 ? Math.max(...t) : Number.NaN) - pairDirect.ms);
      }
      await sleep(200);
    }
  } finally {
    await client.quit();
  }
  ctx.log(`  cold start ${target.label}: proxy ${fmt(median(res.proxyMs), 1)} ms, direct ${fmt(median(res.directMs), 1)} ms, overhead ${fmt(median(res.overheadMs), 1)} ms (median of ${res.proxyMs.length})` +
    (res.pairOverheadMs ? `; two at once, the slower: overhead ${fmt(median(res.pairOverheadMs), 1)} ms` : ''));
  return res;
}

interface TranscodeResult {
  mode: 'shared' | 'individual';
  n: number;
  ffmpegCount: number;
  ffmpegCores: number;
  treeCores: number;
  nodeCores: number;
  /** FFmpeg's own fps and speed per running FFmpeg (25 fps = real time for this source). */
  fps: number[];
  speeds: number[];
  viewerKbps: number;
  viewersWithData: number;
  upstreamOpen: number;
  machineCores: number;
}

function ffmpegPids(pid: number): number[] {
  return sampleTree(pid).filter((s) => s.comm === 'ffmpeg').map((s) => s.pid);
}

async function measureTranscode(ctx: Ctx, proxy: ProxyProcess, mode: TranscodeResult['mode'], streamId: string, originPath: string, n: number): Promise<TranscodeResult> {
  const { plan } = ctx;
  const client = await LoadClient.start(ctx.clientBin);
  try {
    // All N at once: FFmpeg start-up is part of what pooling saves.
    await client.open('main', proxy.port, `/stream/${streamId}`, n, n, 0, 30_000);
    await sleep(plan.transcodeWarmupMs);
    const before = sampleTree(proxy.pid);
    const m0 = sampleMachine();
    const t0 = performance.now();
    await client.mark();
    await sleep(plan.transcodeWindowMs);
    const after = sampleTree(proxy.pid);
    const m1 = sampleMachine();
    const t1 = performance.now();
    await client.mark();
    const pooled = await proxy.api<{ streams: Array<{ speed: number | null; fps: number | null }> }>('GET', '/stats/pooled').catch(() => ({ streams: [] }));
    const report = await client.report();
    const seconds = (t1 - t0) / 1000;
    const d = treeDelta(before, after);
    let ffCpu = 0;
    let ffCount = 0;
    for (const s of after) {
      if (s.comm !== 'ffmpeg') continue;
      ffCount++;
      ffCpu += d.perPid.get(s.pid)?.cpuS ?? 0;
    }
    const main = report.groups.main!;
    const bytes = main.window_bytes.filter((b) => b >= 0);
    const r: TranscodeResult = {
      mode, n,
      ffmpegCount: ffCount,
      ffmpegCores: ffCpu / seconds,
      treeCores: d.cpuS / seconds,
      nodeCores: (d.cpuS - ffCpu) / seconds,
      fps: pooled.streams.map((s) => s.fps ?? Number.NaN).filter((s) => Number.isFinite(s)),
      speeds: pooled.streams.map((s) => s.speed ?? Number.NaN).filter((s) => Number.isFinite(s)),
      viewerKbps: bytes.length ? (bytes.reduce((a, b) => a + b, 0) / bytes.length / report.window_s) * 8 / 1000 : 0,
      viewersWithData: main.window_bytes.filter((b) => b > 0).length,
      upstreamOpen: ctx.origin.open(originPath),
      machineCores: machineCores(m0, m1, ctx.nproc),
    };
    ctx.log(`  transcode ${mode.padEnd(10)} n=${String(n).padStart(2)}  FFmpeg ×${r.ffmpegCount}  ${fmt(r.ffmpegCores, 2)} cores (tree ${fmt(r.treeCores, 2)})  fps ${r.fps.map((s) => fmt(s, 0)).join('/') || '–'}  viewers ${fmt(r.viewerKbps, 0)} kbit/s`);
    return r;
  } finally {
    await client.quit();
    // The next step starts from no FFmpeg (a shared one stops SHARED_STREAM_GRACE after its last viewer).
    for (let i = 0; i < 100 && ffmpegPids(proxy.pid).length > 0; i++) await sleep(100);
  }
}

interface ProfileResult {
  n: number;
  summary: ProfileSummary | null;
  share: number;
  serverCores: number;
}

/**
 * A fresh WORKERS=1 proxy under `node --cpu-prof` (given to the primary; cluster workers
 * inherit its flags), loaded with N viewers for one window.
 */
async function profileProxy(ctx: Ctx, tmp: string, n: number, cleanup: Set<() => Promise<void>>): Promise<ProfileResult> {
  const dir = path.join(tmp, 'cpuprof');
  mkdirSync(dir, { recursive: true });
  const proxy = new ProxyProcess('profiled', ROOT, { WORKERS: '1' }, ['--cpu-prof', `--cpu-prof-dir=${dir}`]);
  const stop = () => proxy.stop();
  cleanup.add(stop);
  try {
    await proxy.start();
    const target: Target = { key: 'proxy1', label: 'proxy (cpu-prof)', port: proxy.port, pid: proxy.pid, proxy, baselineRssKiB: treeRssKiB(sampleTree(proxy.pid)) };
    const r = await measureFanout(ctx, target, n);
    await proxy.stop();
    return { n, summary: busiestProfile(dir), share: r.share, serverCores: r.serverCores };
  } finally {
    await proxy.stop();
    cleanup.delete(stop);
  }
}

// ---------------------------------------------------------------------------------------
// The run

interface Results {
  mode: 'quick' | 'full';
  date: string;
  commit: string;
  srcDirty: boolean;
  machine: { nproc: number; memGiB: number; cpu: string; node: string; kernel: string };
  source: { muxrate: number; byteRate: number; seconds: number };
  plan: Plan;
  command: string;
  fanout: FanoutResult[];
  background: FanoutResult[];
  stoppedBecause: string;
  cold: ColdResult[];
  channels?: ChannelsResult | null;
  scrape?: ScrapeResult | null;
  overload?: OverloadStep[];
  /** `--before`: the commit measured as "before" (key 'before' in fanout). */
  beforeCommit?: string | null;
  transcode: TranscodeResult[];
  profile: ProfileResult | null;
  memory?: MemoryResult | null;
  baselines: Record<string, number>;
  durationS: number;
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

function machine(): Results['machine'] {
  const cpuinfo = existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '';
  return {
    nproc: os.availableParallelism(),
    memGiB: os.totalmem() / 2 ** 30,
    cpu: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    kernel: os.release(),
  };
}

type Cleanup = Set<() => Promise<void>>;

interface FanoutPhase {
  fanout: FanoutResult[];
  background: FanoutResult[];
  cold: ColdResult[];
  baselines: Record<string, number>;
  stoppedBecause: string;
}

/**
 * Fan-out and cold start: the proxy with 1 worker, with 2 workers, and the floor, all up at
 * once and measured one at a time (proxy N, proxy×2 N, floor N, then the next N), so every N
 * is measured for all three within a minute of each other.
 */
async function runFanout(ctx: Ctx, cleanup: Cleanup, doFanout: boolean, doCold: boolean, doBackground: boolean): Promise<FanoutPhase> {
  const { plan, origin, opts, log, started } = ctx;
  const proxy1 = new ProxyProcess('WORKERS=1', ctx.proxyRoot, { WORKERS: '1' });
  const proxy2 = new ProxyProcess('WORKERS=2', ctx.proxyRoot, { WORKERS: '2' });
  const before = ctx.before ? new ProxyProcess(`before ${ctx.before.commit}`, ctx.before.root, { WORKERS: '2' }) : null;
  const floor = new FloorProcess(ROOT);
  const servers = [proxy1, proxy2, ...(before ? [before] : []), floor];
  const stops = servers.map((s) => () => s.stop());
  for (const stop of stops) cleanup.add(stop);
  try {
    await Promise.all([proxy1.start(), proxy2.start(), before?.start(), floor.start(origin.url('/live/floor.ts'))]);
    const targets: Target[] = [];
    const proxies = [['proxy1', 'proxy WORKERS=1', proxy1], ['proxy2', 'proxy WORKERS=2', proxy2]] as Array<[ServerKey, string, ProxyProcess]>;
    if (before) proxies.push(['before', `before ${ctx.before!.commit} W=2`, before]);
    for (const [key, label, proxy] of proxies) targets.push({ key, label, port: proxy.port, pid: proxy.pid, proxy, baselineRssKiB: 0 });
    targets.push({ key: 'floor', label: 'floor (bare node:http)', port: floor.port, pid: floor.pid, path: '/stream', originPath: '/live/floor.ts', baselineRssKiB: 0 });
    await sleep(1500);
    // 0-viewer baselines (the floor's upstream already runs; the proxies open theirs with the first viewer).
    for (const t of targets) t.baselineRssKiB = treeRssKiB(sampleTree(t.pid));
    log(`servers up: proxy1 :${proxy1.port}, proxy2 :${proxy2.port}, floor :${floor.port}; RSS at 0 viewers ${targets.map((t) => `${t.key} ${fmt(t.baselineRssKiB / 1024, 1)} MiB`).join(', ')}`);

    const fanout: FanoutResult[] = [];
    const active = new Set(targets);
    let stoppedBecause = `the ladder ends at ${plan.ladder[plan.ladder.length - 1]} (cap --max ${opts.maxViewers})`;
    for (const n of doFanout ? plan.ladder : []) {
      if (performance.now() - started > plan.fanoutBudgetMs) {
        stoppedBecause = `the time budget (${plan.fanoutBudgetMs / 1000} s) ran out before ${n}`;
        break;
      }
      log(`fan-out, ${n} viewers`);
      for (const t of [...active]) {
        let share = 0;
        try {
          const r = await measureFanout(ctx, t, n);
          fanout.push(r);
          share = r.share;
        } catch (err) {
          // A server that cannot take N (or died) is a result too: logged, and the run goes on.
          log(`  ${t.label}: step ${n} failed: ${err instanceof Error ? err.message : String(err)}`);
        }
        // Past its knee a server leaves the ladder; the others go on up (the proxy may pass the floor's knee).
        if (share < FULL_RATE) active.delete(t);
        await sleep(1000); // sockets closed: the next server starts from a quiet box
      }
      if (![...active].some((t) => t.key === 'proxy1' || t.key === 'proxy2')) {
        stoppedBecause = `both proxies fell below full rate by ${n}`;
        break;
      }
    }

    // The same step beside a light CPU load: a proxy of three processes must not lose far
    // more than the one-process floor to a neighbour (issue 19).
    const background: FanoutResult[] = [];
    if (doBackground) {
      const n = plan.backgroundN;
      log(`fan-out, ${n} viewers, beside a light background load`);
      for (const t of targets) {
        try {
          background.push(await measureFanout(ctx, t, n, true));
        } catch (err) {
          log(`  ${t.label}: background step ${n} failed: ${err instanceof Error ? err.message : String(err)}`);
        }
        await sleep(1000);
      }
    }

    // Cold start, on a quiet box (after the ladder, so its extra channels do not skew the RSS baselines).
    const cold: ColdResult[] = [];
    if (doCold) {
      log('cold start');
      cold.push(await measureCold(ctx, targets[0]!, 'w1'));
      cold.push(await measureCold(ctx, targets[1]!, 'w2'));
    }
    return { fanout, background, cold, baselines: Object.fromEntries(targets.map((t) => [t.key, t.baselineRssKiB])), stoppedBecause };
  } finally {
    for (const s of servers) await s.stop();
    for (const stop of stops) cleanup.delete(stop);
  }
}

/** Transcode: one shared FFmpeg (the default) vs one per viewer (ENABLE_TRANSCODING_POOLING=false). */
async function runTranscode(ctx: Ctx, cleanup: Cleanup): Promise<TranscodeResult[]> {
  const shared = new ProxyProcess('transcode shared', ROOT, { WORKERS: '1', HW_ACCEL: 'cpu' });
  const individual = new ProxyProcess('transcode individual', ROOT, { WORKERS: '1', HW_ACCEL: 'cpu', ENABLE_TRANSCODING_POOLING: 'false' });
  const stops = [shared, individual].map((s) => () => s.stop());
  for (const stop of stops) cleanup.add(stop);
  try {
    await Promise.all([shared.start(), individual.start()]);
    const tc = {
      shared: { proxy: shared, originPath: '/live/tc-shared.ts', id: '' },
      individual: { proxy: individual, originPath: '/live/tc-individual.ts', id: '' },
    };
    for (const t of Object.values(tc)) {
      t.id = (await t.proxy.api<{ stream_id: string }>('POST', '/transcode', { url: ctx.origin.url(t.originPath), profile: TRANSCODE_TEMPLATE })).stream_id;
    }
    const out: TranscodeResult[] = [];
    for (const n of ctx.plan.transcodeLadder) {
      for (const mode of ['shared', 'individual'] as const) {
        const t = tc[mode];
        out.push(await measureTranscode(ctx, t.proxy, mode, t.id, t.originPath, n));
      }
    }
    return out;
  } finally {
    for (const s of [shared, individual]) await s.stop();
    for (const stop of stops) cleanup.delete(stop);
  }
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const plan = planFor(opts);
  const started = performance.now();
  const log = (msg: string): void => {
    process.stdout.write(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);
  };
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'm3u-proxy-bench-'));
  // Everything started is stopped on the way out, whatever happens (also on Ctrl-C).
  const cleanup: Cleanup = new Set();
  let cleaning: Promise<void> | null = null;
  const cleanAll = (): Promise<void> =>
    (cleaning ??= (async () => {
      for (const fn of [...cleanup].reverse()) await fn().catch(() => undefined);
      cleanup.clear();
      rmSync(tmp, { recursive: true, force: true });
    })());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => void cleanAll().then(() => process.exit(130)));
  }

  try {
    const m = machine();
    log(`m3u-proxy bench (${opts.quick ? 'quick' : 'full'}): ${m.nproc} cores, ${fmt(m.memGiB, 1)} GiB, Node ${m.node}`);
    const seconds = 10;
    const [clientBin, origin] = await Promise.all([buildClient(tmp), originAt(tmp, 'fanout', opts.muxrate, cleanup, seconds)]);
    const byteRate = origin.byteRate;
    log(`origin: ${fmt((byteRate * 8) / 1e6, 2)} Mbit/s live TS (H.264 720p25 + AAC, ${seconds} s looped) on port ${origin.port}`);
    const want = (section: string): boolean => (opts.only ? opts.only.has(section) : section !== 'profile' || opts.profile);
    let before: BeforeTree | null = null;
    if (opts.before && (want('fanout') || want('background'))) {
      log(`building ${opts.before} for the before/after`);
      before = await buildBefore(ROOT, tmp, opts.before);
      cleanup.add(() => before!.remove());
    }
    let after: BeforeTree | null = null;
    if (opts.after) {
      log(`building ${opts.after} to measure in place of this checkout`);
      after = await buildBefore(ROOT, tmp, opts.after, 'after');
      cleanup.add(() => after!.remove());
    }
    const ctx: Ctx = { opts, plan, origin, clientBin, nproc: m.nproc, started, log, before, proxyRoot: after?.root ?? ROOT };

    const phase: FanoutPhase = want('fanout') || want('cold') || want('background')
      ? await runFanout(ctx, cleanup, want('fanout'), want('cold'), want('background'))
      : { fanout: [], background: [], cold: [], baselines: {}, stoppedBecause: 'fan-out not run' };

    // A CPU profile of a loaded worker: at the first N where one worker fell below full rate.
    let profile: ProfileResult | null = null;
    if (want('profile')) {
      const w1 = phase.fanout.filter((r) => r.server === 'proxy1');
      const n = w1.find((r) => r.share < FULL_RATE)?.n ?? w1[w1.length - 1]?.n ?? (opts.quick ? 400 : 800);
      log(`cpu profile of one worker with ${n} viewers`);
      profile = await profileProxy(ctx, tmp, n, cleanup);
    }

    let transcode: TranscodeResult[] = [];
    if (want('transcode')) {
      log('transcode');
      transcode = await runTranscode(ctx, cleanup);
    }

    let memory: MemoryResult | null = null;
    if (want('memory')) {
      log(`memory: ${plan.memoryCycles} cycles of ${plan.memoryViewers} viewers (default WORKERS=2)`);
      memory = await runMemoryCycles({ root: ROOT, tmp, origin, clientBin, viewers: plan.memoryViewers, cycles: plan.memoryCycles, workers: 2, playMs: 5000, log }, cleanup);
    }

    let channels: ChannelsResult | null = null;
    if (want('channels')) {
      log(`many channels: ${plan.channels} at ${fmt(plan.channelMuxrate / 1e6, 0)} Mbit/s × ${plan.perChannel} viewers (WORKERS=2), against the floor with as many upstreams`);
      channels = await runChannels({ root: ROOT, tmp, clientBin, nproc: m.nproc, channels: plan.channels, perChannel: plan.perChannel, muxrate: plan.channelMuxrate, workers: 2, warmupMs: plan.warmupMs, windowMs: plan.windowMs, log }, cleanup);
    }

    let scrape: ScrapeResult | null = null;
    if (want('scrape')) {
      log(`/metrics scrape: ${plan.scrapeViewers} viewers on ${plan.scrapeStreams} streams at 1 Mbit/s (WORKERS=2)`);
      scrape = await runScrape({ root: ROOT, tmp, clientBin, nproc: m.nproc, workers: 2, streams: plan.scrapeStreams, viewers: plan.scrapeViewers, muxrate: 1_000_000, scrapes: 20, log }, cleanup);
    }

    let overload: OverloadStep[] = [];
    if (want('overload')) {
      // The knee of the default settings (WORKERS=2) from this run's fan-out ladder; pinned (the
      // proxy started on one CPU, the client on the rest) it is found again on that CPU, unless
      // --knee gives it.
      const knee = opts.knee ?? (maxFull(phase.fanout, 'proxy2') || plan.backgroundN);
      const pin = pinPlan();
      const kneeLadder = opts.knee === null && pin ? plan.overloadKneeLadder : undefined;
      log(`overload: ${plan.overloadFactors.map((f) => `${f}×`).join(', ')} the knee (${kneeLadder ? `found on the proxy's CPU from ${kneeLadder.join(', ')}` : `${knee} viewers`}, npm start defaults${pin ? `, proxy on CPU ${pin.proxy.join(',')}, load client on ${pin.client.join(',')}` : ''})`);
      overload = await runOverload({ root: ROOT, clientBin, origin, nproc: m.nproc, knee, factors: plan.overloadFactors, warmupMs: Math.min(plan.warmupMs, 5000), windowMs: plan.windowMs, log, pin, kneeLadder }, cleanup);
    }

    const results: Results = {
      mode: opts.quick ? 'quick' : 'full',
      date: new Date().toISOString(),
      commit: after ? after.commit : git(['rev-parse', '--short', 'HEAD']),
      srcDirty: after ? false : git(['status', '--porcelain', '--', 'src']) !== '',
      machine: m,
      source: { muxrate: opts.muxrate, byteRate, seconds },
      plan,
      command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
      ...phase, transcode, profile, memory, channels, scrape, overload, beforeCommit: before?.commit ?? null,
      durationS: (performance.now() - started) / 1000,
    };
    const resultsDir = path.join(ROOT, 'bench', 'results');
    mkdirSync(resultsDir, { recursive: true });
    if (opts.only) {
      // A partial run never replaces a complete section of the markdown.
      writeFileSync(path.join(resultsDir, `${results.mode}-partial.json`), `${JSON.stringify(results, null, 1)}\n`);
      log(`done in ${fmt(results.durationS, 0)} s: bench/results/${results.mode}-partial.json (--only: BENCHMARKS.md untouched)`);
      if (profile?.summary) for (const h of profile.summary.top) log(`  ${fmt(h.selfMs, 0).padStart(6)} ms ${pct(h.share, 1).padStart(7)}  ${h.name}  ${h.where}`);
    } else {
      writeFileSync(path.join(resultsDir, `${results.mode}.json`), `${JSON.stringify(results, null, 1)}\n`);
      writeMarkdown(opts.out, results);
      log(`done in ${fmt(results.durationS, 0)} s: ${path.relative(ROOT, opts.out)} (${results.mode} section), bench/results/${results.mode}.json`);
    }
    if (results.fanout.length > 0) for (const line of headline(results)) log(line);
  } finally {
    await cleanAll();
  }
}

// ---------------------------------------------------------------------------------------
// BENCHMARKS.md

/** The largest N of the ladder at which ≥ 95 % of the viewers got full rate (0: none). */
function maxFull(rows: FanoutResult[], server: ServerKey): number {
  return rows.filter((r) => r.server === server && r.share >= FULL_RATE).reduce((m, r) => Math.max(m, r.n), 0);
}

const row = (cells: Array<string | number>): string => `| ${cells.join(' | ')} |`;
const mib = (kib: number): string => fmt(kib / 1024, 1);
const lat = (l: Latency): string => `${fmt(l.p50, 1)} / ${fmt(l.p95, 1)}`;
const firstBytes = (l: Latency): string => `${l.first47}/${l.n} · ${l.firstPat}/${l.n}`;

function headline(r: Results): string[] {
  const f = maxFull(r.fanout, 'floor');
  const p1 = maxFull(r.fanout, 'proxy1');
  const p2 = maxFull(r.fanout, 'proxy2');
  const ladderTop = Math.max(...r.fanout.map((x) => x.n));
  const atTop = (n: number): string => (n === ladderTop && !r.stoppedBecause.startsWith('both proxies') ? ' (the top of the ladder: at least this)' : '');
  const pb = r.beforeCommit ? ` · before (${r.beforeCommit}, WORKERS=2) ${maxFull(r.fanout, 'before')}` : '';
  return [
    `Largest N with ≥ 95 % of viewers at full rate: proxy WORKERS=1 ${p1}${atTop(p1)} · proxy WORKERS=2 ${p2}${atTop(p2)} · floor ${f}${atTop(f)}${pb} (proxy/floor ${ratio(p1, f)}, WORKERS=2/floor ${ratio(p2, f)})`,
  ];
}

interface Target_ {
  name: string;
  goal: string;
  value: string;
  met: boolean | null;
}

/** The largest N where both `key` and the floor delivered full rate, with both rows. */
function bothAtRate(rows: FanoutResult[], key: ServerKey): { n: number; p: FanoutResult; fl: FanoutResult } | null {
  let best: { n: number; p: FanoutResult; fl: FanoutResult } | null = null;
  for (const p of rows.filter((x) => x.server === key && x.share >= FULL_RATE)) {
    const fl = rows.find((x) => x.server === 'floor' && x.n === p.n && x.share >= FULL_RATE);
    if (fl && (!best || p.n > best.n)) best = { n: p.n, p, fl };
  }
  return best;
}

/** Per N where both delivered full rate: `key`'s CPU-s per GB over the floor's. */
function cpuRatios(rows: FanoutResult[], key: ServerKey): Array<{ n: number; ratio: number }> {
  return rows.filter((x) => x.server === key && x.share >= FULL_RATE).flatMap((p) => {
    const fl = rows.find((x) => x.server === 'floor' && x.n === p.n && x.share >= FULL_RATE);
    return fl ? [{ n: p.n, ratio: p.cpuSPerGB / fl.cpuSPerGB }] : [];
  });
}

const wName = (key: ServerKey): string => (key === 'proxy1' ? 'WORKERS=1' : key === 'proxy2' ? 'WORKERS=2 (default)' : key);

/** The targets of issues 19 and 14, each with its number from this run. */
function targets(r: Results): Target_[] {
  const rows = r.fanout;
  const f = maxFull(rows, 'floor');
  const p1 = maxFull(rows, 'proxy1');
  const p2 = maxFull(rows, 'proxy2');
  const out: Target_[] = [];
  out.push({ name: '1. max viewers at full rate, WORKERS=2 (default)', goal: '≥ 1.0× floor', value: `${p2} vs ${f} (${ratio(p2, f)})`, met: f > 0 ? p2 >= f : null });
  out.push({ name: '1. max viewers at full rate, WORKERS=1', goal: '≥ 0.9× floor', value: `${p1} vs ${f} (${ratio(p1, f)})`, met: f > 0 ? p1 >= 0.9 * f : null });
  for (const key of ['proxy2', 'proxy1'] as const) {
    const rs = cpuRatios(rows, key);
    const worst = rs.reduce<{ n: number; ratio: number } | null>((w, x) => (!w || x.ratio > w.ratio ? x : w), null);
    out.push({
      name: `2. CPU-s per GB delivered, ${wName(key)}`,
      goal: '≤ 1.15× floor at every N',
      value: rs.length ? `${rs.map((x) => `${x.n}: ${fmt(x.ratio, 2)}×`).join(', ')} (worst ${fmt(worst!.ratio, 2)}× at ${worst!.n})` : '–',
      met: rs.length ? rs.every((x) => x.ratio <= 1.15) : null,
    });
  }
  for (const key of ['proxy2', 'proxy1'] as const) {
    const upTo = rows.filter((x) => x.server === key && x.n <= 1200);
    const bad = upTo.filter((x) => !(x.warmJoin.p95 <= 50) || x.warmJoin.firstPat !== x.warmJoin.n);
    out.push({
      name: `3. warm join p95 up to 1,200 viewers, ${wName(key)}, first byte 0x47 at a PAT`,
      goal: '≤ 50 ms, all at a PAT',
      value: upTo.map((x) => `${x.n}: ${Number.isFinite(x.warmJoin.p95) ? fmt(x.warmJoin.p95, 0) : 'none in 10 s'} ms (${x.warmJoin.firstPat}/${x.warmJoin.n} PAT)`).join(', ') || '–',
      met: upTo.length ? bad.length === 0 : null,
    });
    const p50 = rows.filter((x) => x.server === key).map((x) => ({ n: x.n, a: x.warmJoin.p50, fl: rows.find((y) => y.server === 'floor' && y.n === x.n)?.warmJoin.p50 }));
    out.push({
      name: `3. warm join p50, ${wName(key)}`,
      goal: '≤ 2× floor at every N',
      // Past its knee the floor leaves the ladder: those N have nothing to compare with.
      value: p50.map((x) => `${x.n}: ${fmt(x.a, 1)} vs ${x.fl === undefined ? 'no floor' : fmt(x.fl, 1)}`).join(', ') || '–',
      met: p50.some((x) => x.fl !== undefined) ? p50.every((x) => x.fl === undefined || x.a <= 2 * Math.max(x.fl, 1)) : null,
    });
  }
  for (const key of ['proxy2', 'proxy1'] as const) {
    const b = bothAtRate(rows, key);
    const w = rows.filter((x) => x.server === key);
    const rssRow = b?.p ?? w[w.length - 1];
    out.push({
      name: `4. RSS per added viewer, ${wName(key)}`,
      goal: '≤ 64 KiB',
      value: rssRow ? `${fmt(rssRow.rssPerViewerKiB, 1)} KiB at ${rssRow.n} viewers (vs 0 viewers; the floor: ${fmt(rows.find((x) => x.server === 'floor' && x.n === rssRow.n)?.rssPerViewerKiB, 1)} KiB)` : '–',
      met: rssRow ? rssRow.rssPerViewerKiB <= 64 : null,
    });
  }
  if (r.memory) {
    const m = r.memory;
    const left = (m.retained.Viewer ?? 0) + (m.retained.TsPacketizer ?? 0) + (m.retained.LiveSession ?? 0);
    out.push({ name: `4. RSS after ${m.cycles.length} cycles of ${m.cycles[0]?.viewers ?? 0} viewers`, goal: 'within 10 % of cycle 1; no viewer/channel/session left', value: `${fmt(m.growth, 3)}× cycle 1 (read 12 s after each cycle: ${fmt(m.growthSettled ?? Number.NaN, 3)}×); left in the heaps: ${left}`, met: m.growth <= 1.1 && left === 0 });
  }
  if (r.channels) {
    const c = r.channels;
    const [px, fl] = [c.sides.find((x) => x.server === 'proxy'), c.sides.find((x) => x.server === 'floor')];
    if (px && fl) {
      out.push({
        name: `5. ${c.channels} channels × ${c.perChannel} viewers at ${fmt(c.muxrate / 1e6, 0)} Mbit/s`,
        goal: 'all at rate, CPU-s/GB ≤ 1.2× floor',
        value: `${px.fullRate}/${px.viewers} at rate (floor ${fl.fullRate}/${fl.viewers}); ${fmt(px.cpuSPerGB, 2)} vs ${fmt(fl.cpuSPerGB, 2)} CPU-s/GB (${ratio(px.cpuSPerGB, fl.cpuSPerGB)}); ${fmt((px.rssKiB - px.rssIdleKiB) / c.channels, 0)} KiB RSS per playing channel; upstreams ${px.upstreams}`,
        met: px.fullRate === px.viewers && px.cpuSPerGB <= 1.2 * fl.cpuSPerGB,
      });
    }
  }
  for (const o of r.overload ?? []) {
    out.push({
      name: `6. overload at ${o.factor}× the knee (${o.knee} + ${o.extra.n}${o.pinned ? ', proxy on 1 core' : ''})`,
      goal: 'playing keep rate; new get 503 or rate',
      value: `playing ${o.playing.fullRate}/${o.playing.n} at rate, ${o.playing.endedMidStream} cut; extra: ${o.extra.status503} × 503, ${o.extra.status200} × 200 (${o.extra.fullRate} at rate), ${o.extra.statusOther} other, ${o.extra.noAnswer} no answer, ${o.extra.endedMidStream} cut`,
      met: o.playing.fullRate >= FULL_RATE * o.playing.n && o.playing.endedMidStream === 0 && o.extra.statusOther === 0 && o.extra.noAnswer === 0 &&
        o.extra.endedMidStream === 0 && o.extra.fullRate >= FULL_RATE * o.extra.status200,
    });
  }
  for (const c of r.cold) {
    const o = median(c.overheadMs);
    out.push({ name: `7. cold start overhead, ${wName(c.server)}`, goal: '≤ 20 ms', value: `${fmt(o, 1)} ms (median of ${c.overheadMs.length})`, met: Number.isFinite(o) ? o <= 20 : null });
    if (c.pairOverheadMs) {
      const q = median(c.pairOverheadMs);
      out.push({ name: `7. cold start, two first viewers at once (one on the non-owner), ${wName(c.server)}`, goal: '≤ 20 ms', value: `the slower: ${fmt(q, 1)} ms (median of ${c.pairOverheadMs.length})`, met: Number.isFinite(q) ? q <= 20 : null });
    }
  }
  if (r.beforeCommit) {
    const pb = maxFull(rows, 'before');
    const rs = rows.filter((x) => x.server === 'proxy2' && x.share >= FULL_RATE).flatMap((p) => {
      const b = rows.find((x) => x.server === 'before' && x.n === p.n && x.share >= FULL_RATE);
      return b ? [{ n: p.n, ratio: p.cpuSPerGB / b.cpuSPerGB }] : [];
    });
    out.push({ name: `issue 14: max viewers, WORKERS=2, now vs ${r.beforeCommit}`, goal: 'no loss', value: `${p2} vs ${pb}`, met: pb > 0 ? p2 >= pb : null });
    out.push({
      name: `issue 14: CPU-s per GB, WORKERS=2, now ÷ ${r.beforeCommit}`,
      goal: '≤ 1.03×',
      value: rs.length ? `${rs.map((x) => `${x.n}: ${fmt(x.ratio, 3)}×`).join(', ')} (median ${fmt(median(rs.map((x) => x.ratio)), 3)}×)` : '–',
      met: rs.length ? median(rs.map((x) => x.ratio)) <= 1.03 : null,
    });
  }
  if (r.scrape) {
    const sc = r.scrape;
    out.push({ name: `issue 14: /metrics scrape, ${sc.connected} viewers on ${sc.streams} streams`, goal: '< 50 ms', value: `p50 ${fmt(sc.p50Ms, 1)} ms, p95 ${fmt(sc.p95Ms, 1)} ms, max ${fmt(sc.maxMs, 1)} ms (${sc.series} series)`, met: sc.p95Ms < 50 });
  }
  // The embedded coordinator lives in the primary: its IPC bytes over the window are the
  // coordinator traffic. Compared between the smallest N and the largest N at which no worker
  // was saturated (a saturated worker runs its periodic refreshes late, outside the window).
  for (const key of ['proxy1', 'proxy2'] as const) {
    const unsaturated = (x: FanoutResult): boolean => x.processes.every((p) => !p.role.startsWith('worker') || p.cores < 0.8);
    const w = rows.filter((x) => x.server === key && Number.isFinite(x.primaryIoBps) && unsaturated(x));
    const lo = w[0];
    const hi = w[w.length - 1];
    out.push({
      name: `coordinator traffic per live channel, ${wName(key)}`,
      goal: 'independent of viewer count',
      value: lo && hi ? `${fmt(lo.primaryIoBps / 1024, 1)} KiB/s at ${lo.n} viewers → ${fmt(hi.primaryIoBps / 1024, 1)} KiB/s at ${hi.n} (${ratio(hi.primaryIoBps, lo.primaryIoBps, 1)} for ${ratio(hi.n, lo.n, 0)} the viewers)` : '–',
      // "Flat": the top costs less than twice the bottom, however many times the viewers.
      met: lo && hi && hi.n > lo.n ? hi.primaryIoBps <= 2 * Math.max(lo.primaryIoBps, 1024) : null,
    });
  }
  return out;
}

function markdownSection(r: Results): string {
  const L: string[] = [];
  const rows = r.fanout;
  const at = (key: ServerKey, n: number): FanoutResult | undefined => rows.find((x) => x.server === key && x.n === n);
  const ns = [...new Set(rows.map((x) => x.n))];
  const mbit = fmt((r.source.byteRate * 8) / 1e6, 2);
  L.push(`Command: \`${r.command}\` · ${r.date.slice(0, 16).replace('T', ' ')} UTC · commit \`${r.commit}\`${r.srcDirty ? ' (with uncommitted changes in src/)' : ''} · took ${fmt(r.durationS, 0)} s`);
  L.push('');
  L.push(`Machine: ${r.machine.nproc} cores (${r.machine.cpu}), ${fmt(r.machine.memGiB, 1)} GiB, Node ${r.machine.node}, Linux ${r.machine.kernel}. ` +
    `Source: ${mbit} Mbit/s live MPEG-TS (H.264 1280×720 25 fps + AAC, ${r.source.seconds} s looped at its real byte rate). ` +
    `Windows: ${r.plan.warmupMs / 1000} s warm-up, ${r.plan.windowMs / 1000} s measured; viewers join ${BATCH} every ${BATCH_INTERVAL_MS} ms; ` +
    `${r.plan.probes} warm-join probes spread over the window (one every ${Math.floor(r.plan.windowMs / r.plan.probes)} ms) while the N play. ` +
    `Every step plays a new stream on each proxy, deleted after the step (so the ladder is also several runs in one process lifetime). Ladder stopped because ${r.stoppedBecause}.`);
  L.push('');
  for (const h of headline(r)) L.push(`**${h}**`);
  L.push('');
  L.push('#### Targets');
  L.push('');
  L.push(row(['target', 'goal', 'measured', '']));
  L.push(row(['---', '---', '---', '---']));
  for (const t of targets(r)) L.push(row([t.name, t.goal, t.value, t.met === null ? 'see text' : t.met ? 'met' : '**missed**']));
  L.push('');

  L.push('#### Fan-out: share of viewers at full rate (≥ 0.95× the source over the window)');
  L.push('');
  L.push(row(['viewers', 'proxy WORKERS=1', 'proxy WORKERS=2', 'floor', 'W=1 / floor', 'W=2 / floor', 'mean Mbit/s per viewer (W=1 · W=2 · floor)']));
  L.push(row(['---:', '---:', '---:', '---:', '---:', '---:', '---:']));
  for (const n of ns) {
    const [a, b, f] = [at('proxy1', n), at('proxy2', n), at('floor', n)];
    const mb = (x?: FanoutResult): string => fmt(x ? (x.meanRateBps * 8) / 1e6 : Number.NaN, 2);
    L.push(row([n, pct(a?.share, 1), pct(b?.share, 1), pct(f?.share, 1), ratio(a?.share, f?.share), ratio(b?.share, f?.share), `${mb(a)} · ${mb(b)} · ${mb(f)}`]));
  }
  L.push('');

  if (r.beforeCommit) {
    L.push(`#### Before/after: WORKERS=2 now against the same at commit \`${r.beforeCommit}\` (interleaved in this run)`);
    L.push('');
    L.push(row(['viewers', 'before at rate', 'now at rate', 'before CPU-s/GB', 'now CPU-s/GB', 'now ÷ before', 'floor CPU-s/GB', 'warm join p50 / p95 ms before · now', 'RSS MiB before · now']));
    L.push(row(['---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
    for (const n of ns) {
      const [b, a, f] = [at('before', n), at('proxy2', n), at('floor', n)];
      L.push(row([n, pct(b?.share, 1), pct(a?.share, 1), fmt(b?.cpuSPerGB, 3), fmt(a?.cpuSPerGB, 3), ratio(a?.cpuSPerGB, b?.cpuSPerGB, 3), fmt(f?.cpuSPerGB, 3),
        `${b ? lat(b.warmJoin) : '–'} · ${a ? lat(a.warmJoin) : '–'}`, `${mib(b?.rssKiB ?? Number.NaN)} · ${mib(a?.rssKiB ?? Number.NaN)}`]));
    }
    L.push('');
  }

  if (r.background.length > 0) {
    const bg = r.background;
    const n0 = bg[0]!.n;
    L.push(`#### ${n0} viewers beside a light background load (one process busy 30 ms of every 100 ms)`);
    L.push('');
    L.push(row(['server', 'at rate (quiet → loaded)', 'CPU-s/GB (quiet → loaded)', 'warm join p50 / p95 ms (quiet → loaded)', 'machine cores loaded']));
    L.push(row(['---', '---:', '---:', '---:', '---:']));
    for (const x of bg) {
      const q = at(x.server, n0);
      L.push(row([x.server === 'floor' ? 'floor' : wName(x.server), `${pct(q?.share, 1)} → ${pct(x.share, 1)}`, `${fmt(q?.cpuSPerGB, 2)} → ${fmt(x.cpuSPerGB, 2)}`, `${q ? lat(q.warmJoin) : '–'} → ${lat(x.warmJoin)}`, fmt(x.machineCores, 2)]));
    }
    L.push('');
  }

  L.push('#### Fan-out: CPU (server = primary + workers, from /proc over the window)');
  L.push('');
  L.push(row(['viewers', 'W=1 cores', 'W=1 CPU-s/GB', 'W=2 cores', 'W=2 CPU-s/GB', 'floor cores', 'floor CPU-s/GB', 'W=1 / floor', 'W=2 / floor', 'machine cores (W=1 · W=2 · floor runs)', 'client cores']));
  L.push(row(['---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
  for (const n of ns) {
    const [a, b, f] = [at('proxy1', n), at('proxy2', n), at('floor', n)];
    const cl = [a, b, f].map((x) => (x ? `${fmt(x.clientCores, 2)}${x.clientCores > CLIENT_SATURATED ? '⚠' : ''}` : '–')).join(' · ');
    L.push(row([n, fmt(a?.serverCores, 2), fmt(a?.cpuSPerGB, 2), fmt(b?.serverCores, 2), fmt(b?.cpuSPerGB, 2), fmt(f?.serverCores, 2), fmt(f?.cpuSPerGB, 2),
      ratio(a?.cpuSPerGB, f?.cpuSPerGB), ratio(b?.cpuSPerGB, f?.cpuSPerGB), [a, b, f].map((x) => fmt(x?.machineCores, 2)).join(' · '), cl]));
  }
  L.push('');
  L.push(`"client cores" is the load client's own CPU (getrusage) over the window; ⚠ marks a client above ${CLIENT_SATURATED} of a core, where the client may be what limits the figure.`);
  L.push('');

  L.push('#### Fan-out: memory');
  L.push('');
  L.push(row(['viewers', 'W=1 RSS MiB', 'W=1 KiB/viewer (vs 0 · vs previous N)', 'W=2 RSS MiB', 'W=2 KiB/viewer (vs 0 · vs previous N)', 'floor RSS MiB', 'floor KiB/viewer (vs 0 · vs previous N)']));
  L.push(row(['---:', '---:', '---:', '---:', '---:', '---:', '---:']));
  L.push(row([0, mib(r.baselines.proxy1 ?? 0), '', mib(r.baselines.proxy2 ?? 0), '', mib(r.baselines.floor ?? 0), '']));
  ns.forEach((n, i) => {
    const prev = i > 0 ? ns[i - 1]! : 0;
    const per = (key: ServerKey): string => {
      const x = at(key, n);
      if (!x) return '–';
      const p = prev > 0 ? at(key, prev) : undefined;
      const slope = p ? (x.rssKiB - p.rssKiB) / (n - prev) : Number.NaN;
      return `${fmt(x.rssPerViewerKiB, 1)} · ${fmt(slope, 1)}`;
    };
    L.push(row([n, mib(at('proxy1', n)?.rssKiB ?? Number.NaN), per('proxy1'), mib(at('proxy2', n)?.rssKiB ?? Number.NaN), per('proxy2'), mib(at('floor', n)?.rssKiB ?? Number.NaN), per('floor')]));
  });
  L.push('');
  L.push(`Idle RSS before each step (MiB; the previous steps' streams deleted, so growth here is memory a finished stream left): ${(['proxy1', 'proxy2', 'before', 'floor'] as const)
    .filter((k) => rows.some((x) => x.server === k)).map((k) => `${k} ${rows.filter((x) => x.server === k).map((x) => mib(x.rssIdleKiB)).join(' → ')}`).join('; ')}.`);
  L.push('');
  L.push('RSS is the sum over the process tree at the end of the window; per viewer = (RSS − RSS at 0 viewers) / N, so the proxy\'s fixed per-channel ring (up to `CHANNEL_BUFFER_SECONDS` of stream) is spread over N; "vs previous N" is the slope between two rungs of the ladder. V8 grows its heap lazily, so both move with GC timing: read them as ± a few tens of KiB.');
  L.push('');

  L.push('#### Joins and upstream connections');
  L.push('');
  L.push(row(['viewers', 'W=1 warm join p50 / p95 ms', 'W=1 0x47 · PAT', 'W=2 warm join p50 / p95 ms', 'W=2 0x47 · PAT', 'floor warm join p50 / p95 ms', 'floor 0x47 · PAT', 'batch join p50 / p95 ms (W=1 · W=2 · floor)', 'upstreams (W=1 · W=2 · floor)']));
  L.push(row(['---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
  for (const n of ns) {
    const [a, b, f] = [at('proxy1', n), at('proxy2', n), at('floor', n)];
    const j = (x?: FanoutResult): [string, string] => (x ? [lat(x.warmJoin), firstBytes(x.warmJoin)] : ['–', '–']);
    L.push(row([n, ...j(a), ...j(b), ...j(f), [a, b, f].map((x) => (x ? lat(x.batchJoin) : '–')).join(' · '), [a, b, f].map((x) => x?.upstreamOpen ?? '–').join(' · ')]));
  }
  L.push('');
  L.push('Warm join: a viewer joining the running channel while the N play, time from `connect()` to the first body byte (after the HTTP head and chunk framing), and whether that byte is a TS sync byte (0x47) and the first packet a PAT (PID 0, payload start). Batch join: the N themselves, 100 at a time. Upstreams: connections the origin had open for that server at the end of the window.');
  L.push('');

  L.push('#### WORKERS=2: where the work goes (relay cost per worker)');
  L.push('');
  L.push(row(['viewers', 'primary cores', 'worker A cores (viewers)', 'worker B cores (viewers)', 'W=2 total cores', 'W=1 cores']));
  L.push(row(['---:', '---:', '---:', '---:', '---:', '---:']));
  for (const n of ns) {
    const b = at('proxy2', n);
    const a = at('proxy1', n);
    if (!b) continue;
    const ws = b.processes.filter((p) => p.role.startsWith('worker'));
    const wcell = (p?: ProcessRole): string => (p ? `${fmt(p.cores, 2)} (${p.viewers ?? '?'}${p.ownsSource ? ', owner' : ', relay'})` : '–');
    L.push(row([n, fmt(b.primaryCores, 3), wcell(ws[0]), wcell(ws[1]), fmt(b.serverCores, 2), fmt(a?.serverCores, 2)]));
  }
  L.push('');
  L.push('Viewers per worker and the owner are counted from the sockets each process holds (/proc/<pid>/fd against /proc/net/tcp) at the end of the window.');
  L.push('');
  L.push('#### Coordinator traffic');
  L.push('');
  L.push(row(['viewers', 'W=1 primary IPC KiB/s', 'W=1 primary cores', 'W=2 primary IPC KiB/s', 'W=2 primary cores']));
  L.push(row(['---:', '---:', '---:', '---:', '---:']));
  for (const n of ns) {
    const [a, b] = [at('proxy1', n), at('proxy2', n)];
    L.push(row([n, fmt((a?.primaryIoBps ?? Number.NaN) / 1024, 1), fmt(a?.primaryCores, 3), fmt((b?.primaryIoBps ?? Number.NaN) / 1024, 1), fmt(b?.primaryCores, 3)]));
  }
  L.push('');
  L.push('With Redis off the coordinator is embedded in the primary and reached over cluster IPC, so the primary\'s read + write bytes over the window (/proc/<pid>/io rchar + wchar; nothing else flows through it once viewers are connected) are the coordinator traffic: lease renewals, heartbeats, client-record refreshes.');
  L.push('');
  L.push('"owner" holds the stream\'s lease and the upstream GET; "relay" receives the stream over one relay connection from the owner and fans it out to its own viewers (the owner counts that relay as one more viewer). Viewers land round robin (the primary deals connections to workers), and a viewer landing on a worker that does not own its stream moves to the owner while the owner has room (VIEWER_HANDOFF).');
  L.push('');

  L.push('#### Cold start');
  L.push('');
  L.push(row(['proxy', 'first viewer TTFB ms (median · min–max)', 'direct origin GET TTFB ms (median)', 'overhead ms (median · max)', 'first byte at a PAT', 'two at once: the slower, overhead ms (median · max)']));
  L.push(row(['---', '---:', '---:', '---:', '---:', '---:']));
  for (const c of r.cold) {
    L.push(row([c.server === 'proxy1' ? 'WORKERS=1' : 'WORKERS=2', `${fmt(median(c.proxyMs), 1)} · ${fmt(Math.min(...c.proxyMs), 1)}–${fmt(Math.max(...c.proxyMs), 1)}`, fmt(median(c.directMs), 1), `${fmt(median(c.overheadMs), 1)} · ${fmt(Math.max(...c.overheadMs), 1)}`, `${c.firstPat}/${c.proxyMs.length}`,
      c.pairOverheadMs ? `${fmt(median(c.pairOverheadMs), 1)} · ${fmt(Math.max(...c.pairOverheadMs), 1)}` : '–']));
  }
  L.push('');
  L.push('Each repeat creates a new stream (`POST /streams`, not timed), GETs the origin directly, then plays the new stream: TTFB from `connect()` to the first body byte. The origin answers at once with 0.1 s of stream.');
  L.push('');

  L.push('#### Transcode: one shared FFmpeg vs one per viewer');
  L.push('');
  L.push(row(['viewers', 'mode', 'FFmpeg processes', 'FFmpeg cores', 'proxy (node) cores', 'machine cores', 'FFmpeg fps', 'viewers with data', 'mean kbit/s per viewer', 'upstreams']));
  L.push(row(['---:', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
  for (const t of r.transcode) {
    L.push(row([t.n, t.mode, t.ffmpegCount, fmt(t.ffmpegCores, 2), fmt(t.nodeCores, 2), fmt(t.machineCores, 2), t.fps.length ? t.fps.map((s) => fmt(s, 0)).join(', ') : '–', `${t.viewersWithData}/${t.n}`, fmt(t.viewerKbps, 0), t.upstreamOpen]));
  }
  L.push('');
  L.push(`Profile: \`${TRANSCODE_TEMPLATE}\` (HW_ACCEL=cpu); individual = a second proxy with \`ENABLE_TRANSCODING_POOLING=false\`. FFmpeg processes counted in the proxy's process tree; fps as FFmpeg reports it (from \`/stats/pooled\`): 25 is real time for this source, below it the box cannot keep that many encodes live.`);
  L.push('');

  if (r.channels) {
    const c = r.channels;
    L.push(`#### Many channels: ${c.channels} live channels at ${fmt((c.byteRate * 8) / 1e6, 2)} Mbit/s × ${c.perChannel} viewers, every channel its own upstream (WORKERS=${c.workers})`);
    L.push('');
    L.push(row(['server', 'viewers at rate', 'cores', 'CPU-s/GB', 'machine cores', 'RSS idle → playing MiB', 'RSS per playing channel KiB', 'upstreams']));
    L.push(row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
    for (const x of c.sides) {
      L.push(row([x.server, `${x.fullRate}/${x.viewers}`, fmt(x.cores, 2), fmt(x.cpuSPerGB, 2), fmt(x.machineCores, 2), `${mib(x.rssIdleKiB)} → ${mib(x.rssKiB)}`, fmt((x.rssKiB - x.rssIdleKiB) / c.channels, 0), x.upstreams]));
    }
    L.push('');
    L.push('The floor here is `bench/floor.ts` with one upstream GET per channel (opened by its first viewer). "RSS per playing channel" is (RSS playing − RSS with the channels created but idle) / channels: ring, packetizer, upstream socket and 3 viewers.');
    L.push('');
  }

  if (r.scrape) {
    const sc = r.scrape;
    L.push(`#### /metrics scrape on a busy host: ${sc.connected} viewers on ${sc.streams} streams (1 Mbit/s, WORKERS=${sc.workers})`);
    L.push('');
    L.push(`${sc.scrapes} GETs of \`/metrics\` 250 ms apart while the viewers play (machine ${fmt(sc.machineCores, 2)} cores busy): wall time p50 ${fmt(sc.p50Ms, 1)} ms, p95 ${fmt(sc.p95Ms, 1)} ms, max ${fmt(sc.maxMs, 1)} ms; ${sc.series} series, ${fmt(sc.bytes / 1024, 0)} KiB.`);
    L.push('');
  }

  if (r.overload && r.overload.length > 0) {
    L.push(`#### Overload: past the knee (npm start defaults${r.overload[0]!.pinned ? ', started on one CPU (WORKERS=1); the load client on the others, the knee found there' : ', WORKERS=2'})`);
    L.push('');
    L.push(row(['load', 'playing at rate', 'playing cut', 'extra viewers', '200', '503', 'other status', 'no answer', 'extra (200) at rate', 'extra cut', 'machine cores']));
    L.push(row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
    for (const o of r.overload) {
      L.push(row([`${o.factor}× (${o.knee} + ${o.extra.n})`, `${o.playing.fullRate}/${o.playing.n}`, o.playing.endedMidStream, o.extra.n, o.extra.status200, o.extra.status503, o.extra.statusOther, o.extra.noAnswer, `${o.extra.fullRate}/${o.extra.status200}`, o.extra.endedMidStream, fmt(o.machineCores, 2)]));
    }
    L.push('');
    L.push('The knee\'s viewers play first; the extra ones arrive 100 every 100 ms; then one window measures both groups. A 503 is admission control\'s answer (JSON, `Retry-After`); "no answer" is a connection with no status in 10 s.');
    L.push('');
  }

  if (r.memory) {
    const m = r.memory;
    L.push(`#### Memory over a lifetime: ${m.cycles.length} cycles of ${m.cycles[0]?.viewers ?? 0} viewers (WORKERS=${m.workers})`);
    L.push('');
    L.push(row(['cycle', 'viewers connected', 'RSS playing MiB', 'RSS 3 s after MiB (stream deleted)', '÷ cycle 1', 'RSS 12 s after MiB', '÷ cycle 1']));
    L.push(row(['---:', '---:', '---:', '---:', '---:', '---:', '---:']));
    const first = m.cycles[0]?.rssAfterKiB ?? Number.NaN;
    // Results saved before the settled reading existed have none.
    const firstSettled = m.cycles[0]?.rssSettledKiB ?? Number.NaN;
    for (const c of m.cycles) {
      const settled = c.rssSettledKiB ?? Number.NaN;
      L.push(row([c.cycle, `${c.connected}/${c.viewers}`, mib(c.rssPlayingKiB), mib(c.rssAfterKiB), fmt(c.rssAfterKiB / first, 3), mib(settled), fmt(settled / firstSettled, 3)]));
    }
    L.push('');
    L.push(`Each cycle creates a new stream, plays it to N viewers for 5 s, closes them and deletes the stream. The judged RSS is the one 3 s after; the second, 12 s after, shows what the processes give back once idle. Then every process (the primary too) writes a heap snapshot (\`--heapsnapshot-signal\`); objects still alive in them: ${Object.entries(m.retained).map(([k, v]) => `\`${k}\` ${v}`).join(', ')} (${m.heapSnapshots} snapshots). Target: RSS within 10 % of cycle 1 (${fmt(m.growth, 3)}×: ${m.growth <= 1.1 ? 'met' : '**missed**'}), no viewer, channel or session of a finished stream (${(m.retained.Viewer ?? 0) + (m.retained.TsPacketizer ?? 0) + (m.retained.LiveSession ?? 0) === 0 ? 'met' : '**missed**'}).`);
    L.push('');
  }

  if (r.profile?.summary) {
    const p = r.profile;
    const s = p.summary!;
    L.push(`#### CPU profile: one worker with ${p.n} viewers`);
    L.push('');
    L.push(`\`node --cpu-prof\` on a fresh WORKERS=1 proxy (flags given to the primary, inherited by the worker), ${p.n} viewers for one window (${pct(p.share, 1)} at full rate, ${fmt(p.serverCores, 2)} cores). Busy time ${fmt(s.busyMs / 1000, 1)} s of ${fmt(s.totalMs / 1000, 1)} s profiled; top self time:`);
    L.push('');
    L.push(row(['self', 'share of busy', 'function', 'where']));
    L.push(row(['---:', '---:', '---', '---']));
    for (const h of s.top) L.push(row([`${fmt(h.selfMs, 0)} ms`, pct(h.share, 1), `\`${h.name}\``, `\`${h.where}\``]));
    L.push('');
  }
  return L.join('\n');
}

const SKELETON = `# Benchmarks

How much the proxy costs on top of the least a Node fan-out can do. \`npm run bench\` builds
the proxy, makes a real 8 Mbit/s H.264 + AAC live TS with ffmpeg, serves it from a paced
origin, starts the proxy exactly as \`npm start\` does (\`node dist/src/index.js\`, one
primary + \`WORKERS\` workers) and a *floor* server (\`bench/floor.ts\`: one process, one
upstream GET, every chunk written to every socket, nothing else), and loads both with a C
epoll client (\`bench/client.c\`, compiled with gcc at bench time). Every figure is measured
for the proxy and the floor in the same run, interleaved (proxy N, proxy×2 N, floor N,
then the next N), and given as a value and a ratio. Raw numbers: \`bench/results/*.json\`.

<!-- bench:reading:start -->
<!-- bench:reading:end -->

## Full run

<!-- bench:full:start -->
(not run yet: \`npm run bench\`)
<!-- bench:full:end -->

## Quick run

<!-- bench:quick:start -->
(not run yet: \`npm run bench -- --quick\`)
<!-- bench:quick:end -->
`;

/** Replaces this mode's section of the file (the rest, the written reading included, stays). */
function writeMarkdown(file: string, r: Results): void {
  const doc = existsSync(file) ? readFileSync(file, 'utf8') : SKELETON;
  const start = `<!-- bench:${r.mode}:start -->`;
  const end = `<!-- bench:${r.mode}:end -->`;
  const body = markdownSection(r);
  const i = doc.indexOf(start);
  const j = doc.indexOf(end);
  const next = i >= 0 && j > i ? `${doc.slice(0, i + start.length)}\n${body}\n${doc.slice(j)}` : `${doc.trimEnd()}\n\n${start}\n${body}\n${end}\n`;
  writeFileSync(file, next);
}

/** `--render <results.json>`: the markdown again from saved results, nothing measured. */
function render(file: string): void {
  const r = JSON.parse(readFileSync(file, 'utf8')) as Results;
  const outIdx = process.argv.indexOf('--out');
  const out = outIdx > 0 ? path.resolve(process.argv[outIdx + 1]!) : path.join(ROOT, 'BENCHMARKS.md');
  writeMarkdown(out, r);
  process.stdout.write(`${path.relative(ROOT, out)}: ${r.mode} section rewritten from ${file}\n`);
}

const renderIdx = process.argv.indexOf('--render');
if (renderIdx > 0) {
  render(path.resolve(process.argv[renderIdx + 1] ?? ''));
} else main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
