// How long a /metrics scrape takes for a host with many viewers and streams, without
// starting them: the real metrics code (WorkerMetrics, HostMetrics, the aggregation) over
// engine state shaped like a busy host (N streams, V viewers spread over W workers, every
// stream owned by one worker and relayed by the others, a fifth of them transcodes). The
// cluster IPC is stood in for by a JSON round trip of each worker's registry.
// `npm run build && node dist/bench/scrape-time.js [streams] [viewers] [workers]`
import { performance } from 'node:perf_hooks';
import type { Coordinator } from '../src/coordination/coordinator.js';
import { renderAggregate, type MetricsJson } from '../src/metrics/aggregate.js';
import { HostMetrics } from '../src/metrics/host-metrics.js';
import { WorkerMetrics } from '../src/metrics/worker-metrics.js';
import type { StreamEngine } from '../src/streams/stream-engine.js';
import type { Transcoder } from '../src/streams/transcode/transcoder.js';

const [streams = 50, viewers = 2000, workers = 2] = process.argv.slice(2).map(Number);
const coordinator = { backend: 'embedded', ping: async () => true } as unknown as Coordinator;
const transcoder = { poolStats: () => ({ threads: 2, queued: 0, completed: 10, utilization: 0.01 }) } as unknown as Transcoder;

function engineFor(w: number): StreamEngine {
  const sessions = Array.from({ length: streams }, (_, s) => {
    const id = s.toString(16).padStart(32, '0');
    const owner = s % workers === w;
    const perStream = Math.floor(viewers / streams / workers);
    const vs = new Map(Array.from({ length: perStream }, (_, i) => [`c${i}`, { bytesSent: 1e6 + i }]));
    return {
      id, key: `${id}:1`, viewers: vs, isOwner: owner, isRelaying: !owner, bytesServed: 1e6 * perStream,
      ownedSource: owner ? { bytesIn: 5e8 } : null, inRate: 125_000, channel: { ccErrors: 3 },
      httpSource: owner ? { errorCount: 1 } : null,
    };
  });
  const owned = sessions.filter((s) => s.isOwner).map((s, i) => ({
    streamId: s.id, poolKey: s.id, slot: 1, clientCount: s.viewers.size, pid: null, startedAt: '',
    transcode: i % 5 === 0 ? { fps: 25, speed: 1.01, bitrate_kbps: 900, frame: 1000, dropped_frames: 0 } : null,
  }));
  return {
    liveSessions: () => sessions.values(),
    vodFigures: () => [],
    ownedSources: () => owned,
    workerStats: () => ({ sources: owned.map((o) => o.streamId), viewers, relays: { receiving: streams - owned.length, serving: owned.length } }),
    ffmpegProcessCount: owned.filter((o) => o.transcode).length,
  } as unknown as StreamEngine;
}

const ws = Array.from({ length: workers }, (_, w) => {
  const m = new WorkerMetrics({ worker: String(w + 1), rootPath: '/m3u-proxy' });
  m.attach({ engine: engineFor(w), transcoder, coordinator });
  return m;
});
const host = new HostMetrics({ expectedWorkers: workers, runningWorkers: () => workers, restarts: () => [], coordinator, processMetrics: true });

async function scrape(): Promise<string> {
  // Each worker's part crosses IPC as JSON.
  const parts = await Promise.all(ws.map(async (m) => JSON.parse(JSON.stringify(await m.json())) as MetricsJson));
  return renderAggregate([await host.json(), ...parts]);
}

const wall: number[] = [];
const cpu: number[] = [];
let size = 0;
for (let i = 0; i < 30; i++) {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  size = (await scrape()).length;
  const c = process.cpuUsage(c0);
  cpu.push((c.user + c.system) / 1000);
  wall.push(performance.now() - t0);
}
// Wall time includes waiting for a CPU on a loaded box; CPU time is the work itself.
const pct = (xs: number[], p: number): string => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))]!.toFixed(1);
console.log(`${streams} streams, ${viewers} viewers, ${workers} workers: scrape ${size} bytes; ` +
  `wall ms p50 ${pct(wall, 0.5)} p90 ${pct(wall, 0.9)}; CPU ms p50 ${pct(cpu, 0.5)} p90 ${pct(cpu, 0.9)} (30 runs, one process does all ${workers} workers' work)`);
process.exit(0);
