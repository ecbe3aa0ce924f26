// prom-client objects made from the definitions file, so a name, help or label set is
// written once (definitions.ts) and only read here.
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { MetricDefinition } from './definitions.js';

type Typed<T extends MetricDefinition['type']> = MetricDefinition & { type: T };

export function counter(d: Typed<'counter'>, registry: Registry): Counter<string> {
  return new Counter({ name: d.name, help: d.help, labelNames: [...d.labels], registers: [registry] });
}

export function gauge(d: Typed<'gauge'>, registry: Registry): Gauge<string> {
  return new Gauge({ name: d.name, help: d.help, labelNames: [...d.labels], registers: [registry] });
}

export function histogram(d: Typed<'histogram'>, registry: Registry): Histogram<string> {
  return new Histogram({ name: d.name, help: d.help, labelNames: [...d.labels], buckets: [...(d.buckets ?? [])], registers: [registry] });
}

/** Creates every series of a closed label set at 0, so rates and alerts see them from the start. */
export function zeroes(metric: Counter<string>, label: string, values: readonly string[], extra: Record<string, string> = {}): void {
  for (const v of values) metric.inc({ ...extra, [label]: v }, 0);
}

/** Resolves `p`, or `fallback` after `ms` (a scrape never waits long on a sick part). */
export function within<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(fallback), ms);
    p.then(
      (v) => { clearTimeout(t); resolve(v); },
      () => { clearTimeout(t); resolve(fallback); },
    );
  });
}
