// `GET /metrics` in the cluster: whichever worker takes the request asks the primary over
// cluster IPC; the primary asks every live worker for its registry, adds its own, sums them
// (aggregate.ts) and answers the text. Messages are tagged `metrics:` so they never meet the
// coordinator's (`coord:`) or the supervisor's (`worker:`) messages.
//
//   worker ─ {t:'metrics:scrape', id} ─► primary ─ {t:'metrics:collect', id} ─► every worker
//   worker ◄ {t:'metrics:text', id, text} ─ primary ◄ {t:'metrics:json', id, metrics} ─┘
import { randomInt } from 'node:crypto';
import { renderAggregate, type MetricsJson } from './aggregate.js';

interface MetricsMessage {
  t: 'metrics:scrape' | 'metrics:collect' | 'metrics:json' | 'metrics:text';
  id: number;
  metrics?: MetricsJson;
  text?: string;
  error?: string;
}

const isMetricsMessage = (m: unknown): m is MetricsMessage =>
  typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string' &&
  (m as { t: string }).t.startsWith('metrics:') && typeof (m as { id?: unknown }).id === 'number';

/** The IPC channel of a worker (`process`) or of the primary to one worker (a cluster Worker). */
export interface MetricsChannel {
  send(message: unknown): unknown;
  on(event: 'message', listener: (m: unknown) => void): unknown;
  off?(event: 'message', listener: (m: unknown) => void): unknown;
  isConnected?(): boolean;
}

/** A worker waits this long for the primary's answer. */
const SCRAPE_TIMEOUT_MS = 5000;
/** The primary waits this long for each worker; a worker that does not answer is left out. */
const COLLECT_TIMEOUT_MS = 3000;

/** Worker side: answers the primary's collect requests with this worker's metrics. */
export function answerCollects(collect: () => Promise<MetricsJson>, channel: MetricsChannel = process as unknown as MetricsChannel): () => void {
  const onMessage = (msg: unknown): void => {
    if (!isMetricsMessage(msg) || msg.t !== 'metrics:collect') return;
    void collect().then(
      (metrics) => channel.send({ t: 'metrics:json', id: msg.id, metrics }),
      (err: unknown) => channel.send({ t: 'metrics:json', id: msg.id, metrics: [], error: String(err) }),
    );
  };
  channel.on('message', onMessage);
  return () => channel.off?.('message', onMessage);
}

/** Worker side: the whole host's metrics text, through the primary. */
export function scrapeThroughPrimary(channel: MetricsChannel = process as unknown as MetricsChannel): Promise<string> {
  const id = randomInt(1, 2 ** 47);
  return new Promise<string>((resolve, reject) => {
    const done = (): void => {
      clearTimeout(timer);
      channel.off?.('message', onMessage);
    };
    const onMessage = (msg: unknown): void => {
      if (!isMetricsMessage(msg) || msg.t !== 'metrics:text' || msg.id !== id) return;
      done();
      if (typeof msg.text === 'string') resolve(msg.text);
      else reject(new Error(msg.error ?? 'the primary sent no metrics'));
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error('the primary did not answer the metrics request'));
    }, SCRAPE_TIMEOUT_MS);
    channel.on('message', onMessage);
    channel.send({ t: 'metrics:scrape', id });
  });
}

/** Primary side: gathers every worker's metrics and its own for any worker that asks. */
export class MetricsHub {
  private readonly workers = new Set<MetricsChannel>();
  private readonly pending = new Map<number, { want: Set<MetricsChannel>; got: MetricsJson[]; finish: () => void }>();
  private nextId = randomInt(1, 2 ** 47);

  constructor(private readonly own: () => Promise<MetricsJson>) {}

  attach(worker: MetricsChannel & { once(event: 'exit', l: () => void): unknown }): void {
    this.workers.add(worker);
    worker.on('message', (msg: unknown) => {
      if (!isMetricsMessage(msg)) return;
      if (msg.t === 'metrics:scrape') void this.answer(worker, msg.id);
      if (msg.t === 'metrics:json') this.collected(worker, msg);
    });
    worker.once('exit', () => {
      this.workers.delete(worker);
      for (const p of this.pending.values()) if (p.want.delete(worker) && p.want.size === 0) p.finish();
    });
  }

  /** The host's metrics text (every live worker plus the primary). */
  async scrape(): Promise<string> {
    const id = this.nextId++;
    const live = [...this.workers].filter((w) => w.isConnected?.() ?? true);
    const got: MetricsJson[] = [];
    const gathered = new Promise<void>((resolve) => {
      const timer = setTimeout(() => finish(), COLLECT_TIMEOUT_MS);
      const finish = (): void => {
        clearTimeout(timer);
        this.pending.delete(id);
        resolve();
      };
      const want = new Set(live);
      this.pending.set(id, { want, got, finish });
      if (want.size === 0) finish();
      for (const w of live) w.send({ t: 'metrics:collect', id });
    });
    const [own] = await Promise.all([this.own(), gathered]);
    return renderAggregate([own, ...got]);
  }

  private collected(worker: MetricsChannel, msg: MetricsMessage): void {
    const p = this.pending.get(msg.id);
    if (!p || !p.want.delete(worker)) return;
    if (Array.isArray(msg.metrics)) p.got.push(msg.metrics);
    if (p.want.size === 0) p.finish();
  }

  private async answer(worker: MetricsChannel, id: number): Promise<void> {
    const reply = await this.scrape().then(
      (text) => ({ t: 'metrics:text', id, text }),
      (err: unknown) => ({ t: 'metrics:text', id, error: String(err) }),
    );
    if (worker.isConnected?.() ?? true) worker.send(reply);
  }
}
