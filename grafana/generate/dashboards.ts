// The four Grafana dashboards as code (@grafana/grafana-foundation-sdk). `npm run dashboards`
// writes them to grafana/dashboards/*.json, which is what Grafana provisions and what the
// tests read: every panel expression is run against a real Prometheus scraping the proxy.
// Several hosts on one Redis each export their own workers: panels sum() over instances.
import { DashboardBuilder, DatasourceVariableBuilder, QueryVariableBuilder, RowBuilder, VariableRefresh, VariableSort } from '@grafana/grafana-foundation-sdk/dashboard';
import type { Dashboard, DataSourceRef } from '@grafana/grafana-foundation-sdk/dashboard';
import { LegendDisplayMode, LegendPlacement, VizLegendOptionsBuilder } from '@grafana/grafana-foundation-sdk/common';
import { DataqueryBuilder } from '@grafana/grafana-foundation-sdk/prometheus';
import { PanelBuilder as StatPanel } from '@grafana/grafana-foundation-sdk/stat';
import { PanelBuilder as TimeseriesPanel } from '@grafana/grafana-foundation-sdk/timeseries';

const DS: DataSourceRef = { type: 'prometheus', uid: '${datasource}' };
const RATE = '$__rate_interval';

interface Query {
  expr: string;
  legend?: string;
}

type Unit = 'short' | 'bps' | 's' | 'bytes' | 'percentunit' | 'reqps' | 'none';

const target = (q: Query, i: number) =>
  new DataqueryBuilder().expr(q.expr).legendFormat(q.legend ?? '__auto').refId(String.fromCharCode(65 + i)).datasource(DS);

function timeseries(title: string, unit: Unit, queries: Query[], description?: string, span = 12): TimeseriesPanel {
  const p = new TimeseriesPanel().title(title).unit(unit).datasource(DS).span(span).height(8).min(0).fillOpacity(10)
    .legend(new VizLegendOptionsBuilder().showLegend(true).displayMode(LegendDisplayMode.List).placement(LegendPlacement.Bottom));
  if (description) p.description(description);
  queries.forEach((q, i) => p.withTarget(target(q, i)));
  return p;
}

function stat(title: string, unit: Unit, q: Query, description?: string): StatPanel {
  const p = new StatPanel().title(title).unit(unit).datasource(DS).span(6).height(4).withTarget(target(q, 0));
  if (description) p.description(description);
  return p;
}

function dashboard(uid: string, title: string, description: string): DashboardBuilder {
  return new DashboardBuilder(title)
    .uid(uid)
    .description(description)
    .tags(['m3u-proxy'])
    .refresh('30s')
    .time({ from: 'now-1h', to: 'now' })
    .timezone('browser')
    .withVariable(new DatasourceVariableBuilder('datasource').label('Prometheus').type('prometheus'));
}

const sumRate = (metric: string, by = ''): string => `sum${by ? ` by (${by})` : ''} (rate(${metric}[${RATE}]))`;
const p95 = (bucket: string, by: string): string =>
  `histogram_quantile(0.95, sum by (le, ${by}) (rate(${bucket}[${RATE}])))`;

function overview(): Dashboard {
  return dashboard('m3u-proxy-overview', 'm3u-proxy / Overview', 'Viewers, streams, traffic, time to first byte and errors of every m3u-proxy host')
    .withRow(new RowBuilder('Now'))
    .withPanel(stat('Viewers', 'short', { expr: 'sum(m3u_proxy_stream_viewers)' }))
    .withPanel(stat('Streams playing', 'short', { expr: 'sum(m3u_proxy_streams{state=~"owner|vod"})' }, 'Each live stream has one owner in the deployment; VOD streams with open connections'))
    .withPanel(stat('Egress', 'bps', { expr: `${sumRate('m3u_proxy_stream_egress_bytes_total')} * 8` }))
    .withPanel(stat('Workers running', 'short', { expr: 'sum(m3u_proxy_workers_running)' }))
    .withRow(new RowBuilder('Traffic'))
    .withPanel(timeseries('Viewers and streams', 'short', [
      { expr: 'sum(m3u_proxy_stream_viewers)', legend: 'viewers' },
      { expr: 'sum by (state) (m3u_proxy_streams)', legend: 'streams: {{state}}' },
    ]))
    .withPanel(timeseries('Egress vs ingress', 'bps', [
      { expr: `${sumRate('m3u_proxy_stream_egress_bytes_total')} * 8`, legend: 'to viewers' },
      { expr: `${sumRate('m3u_proxy_stream_upstream_bytes_total')} * 8`, legend: 'from upstreams' },
    ], 'Fan-out: one upstream feeds every viewer of a stream, so egress is ingress times the viewers per stream'))
    .withPanel(timeseries('Time to first byte p95', 's', [
      { expr: p95('m3u_proxy_time_to_first_byte_seconds_bucket', 'start'), legend: '{{start}}' },
    ], 'warm: the stream was already playing on that worker; cold: the source had to start'))
    .withPanel(timeseries('Joins and departures', 'short', [
      { expr: sumRate('m3u_proxy_viewer_joins_total'), legend: 'joins/s' },
      { expr: sumRate('m3u_proxy_viewer_departures_total', 'reason'), legend: 'left: {{reason}}' },
    ]))
    .withRow(new RowBuilder('Errors'))
    .withPanel(timeseries('Upstream errors by reason', 'short', [
      { expr: sumRate('m3u_proxy_upstream_errors_total', 'reason'), legend: '{{reason}}' },
      { expr: sumRate('m3u_proxy_upstream_connects_total', 'result'), legend: 'connects: {{result}}' },
    ]))
    .withPanel(timeseries('Failovers by reason', 'short', [
      { expr: sumRate('m3u_proxy_failovers_total', 'reason'), legend: '{{reason}}' },
    ]))
    .withPanel(timeseries('Webhook deliveries', 'short', [
      { expr: sumRate('m3u_proxy_webhook_deliveries_total', 'result'), legend: '{{result}}/s' },
      { expr: sumRate('m3u_proxy_webhook_retries_total'), legend: 'retries/s' },
      { expr: 'sum by (state) (m3u_proxy_webhook_queue_deliveries)', legend: '{{state}}' },
    ]))
    .withPanel(timeseries('HTTP requests by status', 'reqps', [
      { expr: sumRate('m3u_proxy_http_requests_total', 'status'), legend: '{{status}}' },
    ]))
    .withPanel(timeseries('API latency p95 by route', 's', [
      { expr: p95('m3u_proxy_http_request_duration_seconds_bucket', 'route'), legend: '{{route}}' },
    ], 'Byte-stream routes (/stream/{id}) are counted, not timed'))
    .build();
}

function streams(): Dashboard {
  const sel = 'stream_id=~"$stream_id"';
  return dashboard('m3u-proxy-streams', 'm3u-proxy / Streams', 'Per stream: viewers, bitrate, continuity-counter errors, reconnects')
    .withVariable(new QueryVariableBuilder('stream_id').label('Stream').datasource(DS)
      .query('label_values(m3u_proxy_stream_viewers, stream_id)').refresh(VariableRefresh.OnTimeRangeChanged)
      .sort(VariableSort.AlphabeticalAsc).multi(true).includeAll(true).allValue('.+'))
    .withPanel(timeseries('Viewers per stream', 'short', [
      { expr: `sum by (stream_id) (m3u_proxy_stream_viewers{${sel}})`, legend: '{{stream_id}}' },
    ]))
    .withPanel(timeseries('Upstream bitrate', 'bps', [
      { expr: `sum by (stream_id) (m3u_proxy_stream_upstream_bytes_per_second{${sel}}) * 8`, legend: '{{stream_id}}' },
    ], 'Measured on the stream\'s owner over 5 s'))
    .withPanel(timeseries('Egress per stream', 'bps', [
      { expr: `sum by (stream_id) (rate(m3u_proxy_stream_egress_bytes_total{${sel}}[${RATE}])) * 8`, legend: '{{stream_id}}' },
    ]))
    .withPanel(timeseries('Continuity-counter errors', 'short', [
      { expr: `sum by (stream_id) (increase(m3u_proxy_stream_cc_errors_total{${sel}}[${RATE}]))`, legend: '{{stream_id}}' },
    ], 'MPEG-TS packets lost upstream (a reconnect usually adds one per PID)'))
    .withPanel(timeseries('Upstream reconnects', 'short', [
      { expr: `sum by (stream_id) (increase(m3u_proxy_stream_upstream_reconnects_total{${sel}}[${RATE}]))`, legend: '{{stream_id}}' },
    ]))
    .withPanel(timeseries('Viewers per source', 'short', [
      { expr: `sum by (stream_id, slot) (m3u_proxy_source_viewers{${sel}})`, legend: '{{stream_id}} #{{slot}}' },
    ], 'A shared transcode runs one FFmpeg per slot of MAX_CLIENTS_PER_SHARED_STREAM viewers'))
    .build();
}

function transcoding(): Dashboard {
  const isTranscode = 'and on (stream_id, slot) group by (stream_id, slot) (m3u_proxy_transcode_dropped_frames_total)';
  return dashboard('m3u-proxy-transcoding', 'm3u-proxy / Transcoding', 'FFmpeg processes, speed, fps, dropped frames, viewers per FFmpeg, render threads')
    .withPanel(timeseries('FFmpeg processes', 'short', [
      { expr: 'sum(m3u_proxy_ffmpeg_processes)', legend: 'running' },
      { expr: `sum(increase(m3u_proxy_ffmpeg_starts_total[${RATE}]))`, legend: 'started' },
      { expr: `sum by (reason) (increase(m3u_proxy_ffmpeg_exits_total[${RATE}]))`, legend: 'exited: {{reason}}' },
    ]))
    .withPanel(timeseries('Speed (1 = real time)', 'none', [
      { expr: 'sum by (stream_id, slot) (m3u_proxy_transcode_speed_ratio)', legend: '{{stream_id}} #{{slot}}' },
    ], 'Below 1 FFmpeg cannot keep up: viewers stall'))
    .withPanel(timeseries('Frames per second', 'none', [
      { expr: 'sum by (stream_id, slot) (m3u_proxy_transcode_frames_per_second)', legend: '{{stream_id}} #{{slot}}' },
    ]))
    .withPanel(timeseries('Dropped frames', 'short', [
      { expr: `sum by (stream_id, slot) (rate(m3u_proxy_transcode_dropped_frames_total[${RATE}]))`, legend: '{{stream_id}} #{{slot}}' },
    ]))
    .withPanel(timeseries('Viewers per FFmpeg', 'short', [
      { expr: `sum by (stream_id, slot) (m3u_proxy_source_viewers) ${isTranscode}`, legend: '{{stream_id}} #{{slot}}' },
    ]))
    .withPanel(timeseries('Render threads', 'percentunit', [
      { expr: 'max by (instance, worker) (m3u_proxy_render_pool_utilization_ratio)', legend: 'utilisation {{instance}} w{{worker}}' },
      { expr: 'sum by (instance, worker) (m3u_proxy_render_pool_queued_tasks)', legend: 'queued {{instance}} w{{worker}}' },
      { expr: p95('m3u_proxy_render_task_duration_seconds_bucket', 'instance'), legend: 'task p95 (s) {{instance}}' },
    ], 'Profile templates are rendered to an FFmpeg argv off the event loop'))
    .withPanel(timeseries('Broadcasts (Networks)', 'short', [
      { expr: 'sum(m3u_proxy_broadcasts_running)', legend: 'running' },
      { expr: `sum(increase(m3u_proxy_broadcast_segments_total[${RATE}]))`, legend: 'segments written' },
      { expr: `sum by (event, result) (increase(m3u_proxy_broadcast_callbacks_total[${RATE}]))`, legend: 'callback {{event}}: {{result}}' },
    ], 'FFmpeg runs of m3u-editor Networks; a callback timeout is normal (the editor starts the next programme inside its handler)'))
    .build();
}

function cluster(): Dashboard {
  return dashboard('m3u-proxy-cluster', 'm3u-proxy / Cluster', 'Workers, restarts, leases, relays, event loop, memory, coordinator health')
    .withPanel(timeseries('Workers', 'short', [
      { expr: 'sum by (instance) (m3u_proxy_workers_running)', legend: 'running {{instance}}' },
      { expr: 'sum by (instance) (m3u_proxy_workers_expected)', legend: 'expected {{instance}}' },
      { expr: `sum by (instance, worker) (increase(m3u_proxy_worker_restarts_total[${RATE}]))`, legend: 'restarts {{instance}} w{{worker}}' },
    ]))
    .withPanel(timeseries('Sources owned per worker', 'short', [
      { expr: 'sum by (instance, worker) (m3u_proxy_sources_owned)', legend: '{{instance}} w{{worker}}' },
    ]))
    .withPanel(timeseries('Leases', 'short', [
      { expr: sumRate('m3u_proxy_lease_acquires_total', 'result'), legend: 'acquire: {{result}}' },
      { expr: sumRate('m3u_proxy_lease_renewals_total'), legend: 'renewals/s' },
      { expr: `sum(increase(m3u_proxy_lease_losses_total[${RATE}]))`, legend: 'lost' },
    ]))
    .withPanel(timeseries('Relay connections and viewer moves', 'short', [
      { expr: 'sum by (direction) (m3u_proxy_relay_connections)', legend: 'relays: {{direction}}' },
      { expr: sumRate('m3u_proxy_viewer_handoffs_total', 'direction'), legend: 'moved/s: {{direction}}' },
    ], 'Relays: one per worker and stream that is not the owner, whatever the number of viewers. Moves: viewers handed to the owner worker instead (VIEWER_HANDOFF)'))
    .withPanel(timeseries('Event-loop lag p99', 's', [
      { expr: 'max by (instance, worker) (nodejs_eventloop_lag_p99_seconds)', legend: '{{instance}} {{worker}}' },
    ]))
    .withPanel(timeseries('Memory (resident)', 'bytes', [
      { expr: 'sum by (instance, worker) (process_resident_memory_bytes)', legend: 'rss {{instance}} {{worker}}' },
    ]))
    .withPanel(timeseries('CPU per process', 'percentunit', [
      { expr: sumRate('process_cpu_seconds_total', 'instance, worker'), legend: '{{instance}} {{worker}}' },
    ]))
    .withPanel(timeseries('Coordinator up', 'short', [
      { expr: 'min by (instance, worker, backend) (m3u_proxy_coordinator_up)', legend: '{{instance}} {{worker}} {{backend}}' },
    ], '1 when the coordinator (embedded in the primary, or Redis) answered a ping during the scrape'))
    .build();
}

/** File name → dashboard JSON. */
export function dashboards(): Record<string, Dashboard> {
  return { 'overview.json': overview(), 'streams.json': streams(), 'transcoding.json': transcoding(), 'cluster.json': cluster() };
}

/** A dashboard's JSON exactly as committed (a test compares the files with a fresh build). */
export const dashboardText = (d: Dashboard): string => `${JSON.stringify(d, null, 2)}\n`;
