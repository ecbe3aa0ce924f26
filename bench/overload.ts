// Overload (issue 19, target 6): past the knee, viewers already playing must keep playing at
// rate and new viewers must get a fast 503 JSON (admission control), never a 200 that starves
// or a 5xx mid-stream. The knee is the largest N at which the default proxy kept ≥ 95 % of
// its viewers at full rate in the fan-out ladder of the same run.
//
// Pinned (`pin`, on a box of ≥ 2 allowed CPUs with taskset): the proxy is started on the first
// CPU (so its defaults give it one worker, as `npm start` on a one-CPU host) and the load client
// runs on the others (the bench's own process, the origin, is not pinned), and the knee is found
// again under that confinement (a short ladder). Unpinned,
// past the knee the client and the proxy starve each other on the same cores, and the rows
// measure the box as much as admission control.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { LoadClient } from './client.js';
import type { Origin } from './origin.js';
import { machineCores, sampleMachine } from './proc.js';
import { ProxyProcess } from './servers.js';
import { atFullRate, fmt, FULL_RATE, percentile, sleep } from './stats.js';

export interface OverloadStep {
  factor: number;
  knee: number;
  /** Whether the proxy ran on core 0 and the load client on the others. */
  pinned: boolean;
  /** The knee's worth of viewers, playing before the extra ones come. */
  playing: { n: number; fullRate: number; endedMidStream: number };
  /** The viewers past the knee: how each was answered and how the admitted ones fared. */
  /** fullRate counts admitted (200) extra viewers at rate over the window; ttfbP95Ms is theirs. */
  extra: { n: number; status200: number; status503: number; statusOther: number; noAnswer: number; fullRate: number; endedMidStream: number; ttfbP95Ms: number };
  machineCores: number;
}

export interface OverloadOptions {
  root: string;
  clientBin: string;
  origin: Origin;
  nproc: number;
  knee: number;
  factors: number[];
  warmupMs: number;
  windowMs: number;
  log: (msg: string) => void;
  /** Proxy on one CPU, load client on the others (pinPlan()); the knee is then the largest passing N of `kneeLadder`. */
  pin?: { proxy: number[]; client: number[] } | null;
  kneeLadder?: number[];
}

/**
 * Pins every thread of `pid` to `cpus` (a taskset list, e.g. "0" or "1,3"); its children
 * inherit it. A process that exited meanwhile (a tool's `--version` run) is skipped.
 */
function pin(pid: number, cpus: number[]): void {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', cpus.join(','), String(pid)], { stdio: 'ignore' });
  } catch {
    // gone, or not ours to pin: it runs where the scheduler puts it
  }
}

/** The CPUs this process may run on (`Cpus_allowed_list`, e.g. "0-1" or "4-7,12"); [] if unknown. */
function allowedCpus(): number[] {
  try {
    const list = /^Cpus_allowed_list:\s*(\S+)/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '';
    return list.split(',').flatMap((r) => {
      const [a, b] = r.split('-').map(Number);
      return Number.isInteger(a) ? Array.from({ length: (Number.isInteger(b) ? b! : a!) - a! + 1 }, (_, i) => a! + i) : [];
    });
  } catch {
    return [];
  }
}

/** The proxy's CPU and the load client's, when there are two or more and taskset runs; else null. */
export function pinPlan(): { proxy: number[]; client: number[] } | null {
  const cpus = allowedCpus();
  if (cpus.length < 2) return null;
  try {
    execFileSync('taskset', ['-p', String(process.pid)], { stdio: 'ignore' });
  } catch {
    return null;
  }
  return { proxy: cpus.slice(0, 1), client: cpus.slice(1) };
}

/** `npm start` defaults (WORKERS = the CPUs it starts on: 1 pinned, else the box's; admission control as configured), one stream per factor. */
export async function runOverload(o: OverloadOptions, cleanup: Set<() => Promise<void>>): Promise<OverloadStep[]> {
  // Started on its CPU (not pinned after): `npm start` defaults then size it for that CPU
  // (WORKERS=1), as on a host with one. Pinned after start, two workers shared one core and
  // each one's loop looked less busy than the core was (admission reads its own loop).
  const proxy = new ProxyProcess('overload', o.root, {}, [], o.pin?.proxy ?? []);
  const stop = () => proxy.stop();
  cleanup.add(stop);
  const out: OverloadStep[] = [];
  const plan = o.pin ?? null;
  /** A new stream of `originPath` and a (pinned) load client for one step; both go after it. */
  const step = async <T>(originPath: string, body: (id: string, client: LoadClient) => Promise<T>): Promise<T> => {
    const { stream_id: id } = await proxy.api<{ stream_id: string }>('POST', '/streams', { url: o.origin.url(originPath) });
    const client = await LoadClient.start(o.clientBin);
    if (plan) pin(client.pid, plan.client);
    try {
      return await body(id, client);
    } finally {
      await client.quit();
      await proxy.api('DELETE', `/streams/${id}`).catch(() => undefined);
      await sleep(2000);
    }
  };
  try {
    await proxy.start();

    let knee = o.knee;
    if (plan && o.kneeLadder && o.kneeLadder.length > 0) {
      const ladder = o.kneeLadder;
      const share = (n: number): Promise<number> => step(`/live/overload-knee-${n}.ts`, async (id, client) => {
        await client.open('playing', proxy.port, `/stream/${id}`, n, 100, 100, 15_000);
        await sleep(o.warmupMs);
        await client.mark();
        await sleep(o.windowMs);
        await client.mark();
        const r = await client.report();
        const s = atFullRate(r.groups.playing!.window_bytes, r.window_s, o.origin.byteRate) / n;
        o.log(`  overload knee, proxy on CPU ${plan.proxy.join(',')}: ${n} viewers, ${fmt(s * 100, 1)} % at rate`);
        return s;
      });
      knee = 0;
      for (const n of ladder) {
        if ((await share(n)) < FULL_RATE) break;
        knee = n;
      }
      if (knee === 0) {
        // The first step already failed: down by the ladder's spacing until one passes, so the
        // steps past the knee start from a knee measured in this run, not from a failed step.
        const spacing = ladder.length > 1 ? ladder[1]! - ladder[0]! : Math.ceil(ladder[0]! / 4);
        for (let n = ladder[0]! - spacing; n > 0 && knee === 0; n -= spacing) {
          // Past the refusals of the failed step first (the primary's hold is ADMISSION_QUEUE_MS, 5 s).
          await sleep(6000);
          if ((await share(n)) >= FULL_RATE) knee = n;
        }
        if (knee === 0) {
          knee = Math.max(1, ladder[0]! - spacing * Math.floor((ladder[0]! - 1) / spacing));
          o.log(`  overload: no step down to ${knee} kept ${FULL_RATE * 100} % at rate; the steps below start from ${knee}`);
        } else {
          o.log(`  overload: the ladder's first step failed; the knee is ${knee}, found going down`);
        }
      } else if (knee === ladder[ladder.length - 1]) {
        o.log(`  overload: every step of the ladder passed; the knee is at least ${knee}`);
      }
    }
    for (const factor of o.factors) {
      await step(`/live/overload-${factor}.ts`, async (id, client) => {
        const extraN = Math.round(knee * (factor - 1));
        await client.open('playing', proxy.port, `/stream/${id}`, knee, 100, 100, 15_000);
        await sleep(o.warmupMs);
        // The extra viewers arrive, then one window measures both groups: the playing ones
        // must not lose rate, the admitted extra ones must get it too.
        await client.open('extra', proxy.port, `/stream/${id}`, extraN, 100, 100, 10_000);
        await sleep(2000);
        const m0 = sampleMachine();
        await client.mark();
        await sleep(o.windowMs);
        await client.mark();
        const m1 = sampleMachine();
        const r = await client.report();
        const p = r.groups.playing!;
        const x = r.groups.extra!;
        const count = (pred: (s: number) => boolean): number => x.statuses.filter(pred).length;
        const result: OverloadStep = {
          factor, knee, pinned: plan !== null,
          playing: { n: p.n, fullRate: atFullRate(p.window_bytes, r.window_s, o.origin.byteRate), endedMidStream: p.ended },
          extra: {
            n: x.n, status200: count((s) => s === 200), status503: count((s) => s === 503),
            statusOther: count((s) => s > 0 && s !== 200 && s !== 503), noAnswer: count((s) => s <= 0),
            fullRate: atFullRate(x.window_bytes, r.window_s, o.origin.byteRate), endedMidStream: x.ended, ttfbP95Ms: percentile(x.ttfb_ms, 95),
          },
          machineCores: machineCores(m0, m1, o.nproc),
        };
        out.push(result);
        o.log(`  overload ${factor}× knee (${knee} + ${extraN}${plan ? `, proxy on CPU ${plan.proxy.join(',')}` : ''}): playing ${result.playing.fullRate}/${result.playing.n} at rate, ${result.playing.endedMidStream} ended; ` +
          `extra 200 ${result.extra.status200}, 503 ${result.extra.status503}, other ${result.extra.statusOther}, none ${result.extra.noAnswer}, ended ${result.extra.endedMidStream}; machine ${fmt(result.machineCores, 2)} cores`);
      });
    }
    return out;
  } finally {
    await proxy.stop();
    cleanup.delete(stop);
  }
}
