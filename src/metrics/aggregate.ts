// Turns the registries of every process of a host (each worker, and the primary) into one
// Prometheus text exposition, with prom-client's AggregatorRegistry: series with the same
// name and labels are summed. Per-worker series (process, event loop, sources owned, relays)
// carry a `worker` label, so they never merge; per-stream series are summed over workers
// (a stream's viewers on worker 1 plus those on worker 2; owner-only figures come from one).
import { AggregatorRegistry, type MetricObjectWithValues, type MetricValue, type Registry } from 'prom-client';
import { DROPPED_DEFAULT_METRICS } from './definitions.js';

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** A registry's metrics as plain data (what crosses the cluster IPC), minus the dropped names. */
export async function registryJson(registry: Registry): Promise<MetricsJson> {
  const all = await registry.getMetricsAsJSON();
  return all.filter((m) => !DROPPED_DEFAULT_METRICS.has(m.name));
}

/** The Prometheus text of several processes' metrics, summed series by series. */
export async function renderAggregate(parts: MetricsJson[]): Promise<string> {
  // prom-client's own choices ('omit' for process_start_time_seconds, 'average' for the
  // event-loop figures) assume unlabelled workers; ours are labelled, so a sum is exact.
  const summed = parts.map((metrics) => metrics.map((m) => ({ ...m, aggregator: 'sum' as const })));
  return AggregatorRegistry.aggregate(summed).metrics();
}
