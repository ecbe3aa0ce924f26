// Every metric the proxy exports: name, type, help and labels, in one place (DESIGN.md §7).
// Names follow Prometheus conventions: prefix `m3u_proxy_`, counters end in `_total`, base
// units (`_bytes`, `_seconds`). `stream_id` (md5 hex, bounded by the streams playing) is the
// only high-cardinality label; every other label is a closed set (reasons, results, states,
// the worker's slot number, route templates). Never a URL, IP, token or user agent.
//
// Adding a metric: add an entry here (the key is how code refers to it), then either feed it
// at scrape time in worker-metrics.ts / host-metrics.ts (preferred for anything per chunk or
// per viewer: keep the figure in a plain field and read it in collect()), or count an event
// (a join, an exit, a connect) through the StreamTelemetry sink.

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricDefinition {
  name: string;
  type: MetricType;
  help: string;
  labels: readonly string[];
  /** Histograms only: bucket upper bounds. */
  buckets?: readonly number[];
}

const def = <T extends MetricType>(
  type: T, name: string, help: string, labels: readonly string[] = [], buckets?: readonly number[],
): MetricDefinition & { type: T } => ({ name: `m3u_proxy_${name}`, type, help, labels, ...(buckets ? { buckets } : {}) });

/** Closed label sets (the values a label may take). */
export const VIEWER_END_REASONS = ['closed', 'too_slow', 'stalled', 'source_ended', 'shed'] as const;
export const UPSTREAM_ERROR_REASONS = ['connect_error', 'http_error', 'not_media', 'chunk_timeout', 'silent_close'] as const;
export const FAILOVER_REASONS = [...UPSTREAM_ERROR_REASONS, 'manual'] as const;
export const FFMPEG_EXIT_REASONS = ['stopped', 'ended', 'input_error', 'output_error', 'error'] as const;
export const STREAM_STATES = ['owner', 'relay', 'starting', 'vod'] as const;
export const START_KINDS = ['warm', 'cold'] as const;
export const BROADCAST_CALLBACK_EVENTS = ['programme_ended', 'broadcast_failed'] as const;
export const BROADCAST_CALLBACK_RESULTS = ['ok', 'http_error', 'timeout', 'error'] as const;

/** Metrics every worker exports (aggregated by the primary: same labels from two workers are summed). */
export const WORKER_METRICS = {
  streamViewers: def('gauge', 'stream_viewers', 'Viewers playing the stream (live TS, HLS and VOD), on this host', ['stream_id']),
  streams: def('gauge', 'streams', 'Streams playing on this host by how each worker feeds them: owner (runs the source or fetches the HLS origin), relay (fed by the owner), starting (no feed yet), vod; a live stream on two workers counts once as owner and once as relay', ['state']),
  sourceViewers: def('gauge', 'source_viewers', 'Viewers per source (an upstream connection or one FFmpeg); slot numbers the FFmpeg processes of one shared transcode', ['stream_id', 'slot']),
  streamEgressBytes: def('counter', 'stream_egress_bytes_total', 'Bytes sent to viewers of the stream (relays between workers excluded)', ['stream_id']),
  streamUpstreamBytes: def('counter', 'stream_upstream_bytes_total', 'Bytes the stream\'s owner received from its source (the upstream body; a transcode: FFmpeg\'s output; a resolver: its output; an HLS source played as TS: the segments)', ['stream_id']),
  streamUpstreamRate: def('gauge', 'stream_upstream_bytes_per_second', 'Upstream bitrate of the stream in bytes/s (×8 for bit/s), over the last 5 s, on its owner', ['stream_id']),
  streamBufferBytes: def('gauge', 'stream_buffer_bytes', 'Bytes the stream\'s ring buffers hold on this host, every worker that plays it (owner and relays); about CHANNEL_BUFFER_SECONDS × its bitrate each, at least its newest keyframe GOP', ['stream_id']),
  streamBufferReservedBytes: def('gauge', 'stream_buffer_reserved_bytes', 'Memory the stream\'s rings keep on this host in the reused blocks their bytes are copied into (64 KiB–4 MiB): the chunks held, the rest of the block being filled, the evicted part of the oldest block, up to two spares each. Chunks over 2 MiB and keep-alives are not in blocks (counted in stream_buffer_bytes only), nor are blocks dropped while a slow viewer still pins them', ['stream_id']),
  streamCcErrors: def('counter', 'stream_cc_errors_total', 'MPEG-TS continuity-counter errors in the stream\'s source (packets lost upstream, reconnects included); duplicates and flagged discontinuities are not errors', ['stream_id']),
  streamReconnects: def('counter', 'stream_upstream_reconnects_total', 'Upstream connections of the stream that ended and were retried or failed over', ['stream_id']),
  viewerJoins: def('counter', 'viewer_joins_total', 'Viewers that started receiving a stream'),
  viewerDepartures: def('counter', 'viewer_departures_total', 'Viewers that left, by reason: closed (the player hung up or the stream was stopped), too_slow (fell off the buffer too often), stalled (socket accepted nothing), source_ended, shed (closed, newest first, by a worker reading its sources late)', ['reason']),
  viewerHandoffs: def('counter', 'viewer_handoffs_total', 'Live viewers\' connections moved between the workers of this host to the one that owns the stream (VIEWER_HANDOFF), instead of a relay: out (sent by the worker that accepted it), in (served by the owner); a move back to its sender counts both on it', ['direction']),
  timeToFirstByte: def('histogram', 'time_to_first_byte_seconds', 'From a live request to its first byte: warm (the stream was already playing here) or cold (the source had to start)', ['start'],
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15]),
  upstreamConnects: def('counter', 'upstream_connects_total', 'Upstream connection attempts of live sources by result (ok: a media response)', ['result']),
  upstreamErrors: def('counter', 'upstream_errors_total', 'Upstream connections of live sources that failed or ended, by reason', ['reason']),
  failovers: def('counter', 'failovers_total', 'Switches down a stream\'s failover list, by reason', ['reason']),
  ffmpegProcesses: def('gauge', 'ffmpeg_processes', 'FFmpeg processes running', ['worker']),
  ffmpegStarts: def('counter', 'ffmpeg_starts_total', 'FFmpeg processes started'),
  ffmpegExits: def('counter', 'ffmpeg_exits_total', 'FFmpeg processes that exited, by reason: stopped (by us), ended (exit 0 on its own), input_error, output_error, error', ['reason']),
  transcodeSpeed: def('gauge', 'transcode_speed_ratio', 'FFmpeg speed (1 = real time) per transcode source', ['stream_id', 'slot']),
  transcodeFps: def('gauge', 'transcode_frames_per_second', 'FFmpeg output frames per second per transcode source', ['stream_id', 'slot']),
  transcodeDroppedFrames: def('counter', 'transcode_dropped_frames_total', 'Frames FFmpeg dropped per transcode source', ['stream_id', 'slot']),
  sourcesOwned: def('gauge', 'sources_owned', 'Sources (upstream connections, FFmpeg processes) this worker owns', ['worker']),
  relayConnections: def('gauge', 'relay_connections', 'Relay connections between workers: serving (this worker is the owner) or receiving', ['worker', 'direction']),
  leaseAcquires: def('counter', 'lease_acquires_total', 'Stream lease acquisition attempts by result (acquired, busy: held by another worker)', ['result']),
  leaseRenewals: def('counter', 'lease_renewals_total', 'Stream leases renewed'),
  leaseLosses: def('counter', 'lease_losses_total', 'Stream leases lost while the source ran (its source was stopped at once)'),
  renderPoolUtilization: def('gauge', 'render_pool_utilization_ratio', 'Share of the render threads\' capacity spent rendering (0..1, piscina)', ['worker']),
  renderPoolThreads: def('gauge', 'render_pool_threads', 'Render threads running (0 until the first transcode)', ['worker']),
  renderPoolQueue: def('gauge', 'render_pool_queued_tasks', 'Render tasks waiting for a thread', ['worker']),
  renderTaskDuration: def('histogram', 'render_task_duration_seconds', 'Time to render a transcode profile into an FFmpeg argv (queue wait included)', [],
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]),
  httpRequests: def('counter', 'http_requests_total', 'HTTP requests by route template, method and status (byte-stream routes included)', ['route', 'method', 'status']),
  httpRequestDuration: def('histogram', 'http_request_duration_seconds', 'Time to answer an API request (byte-stream routes are counted, not timed)', ['route', 'method'],
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]),
  webhookDeliveries: def('counter', 'webhook_deliveries_total', 'Webhook deliveries by result: delivered (2xx/3xx), failed (every retry failed), dropped (queue full or shutting down)', ['result']),
  webhookRetries: def('counter', 'webhook_retries_total', 'Webhook POSTs retried'),
  webhookQueue: def('gauge', 'webhook_queue_deliveries', 'Webhook deliveries waiting (queued) or being sent (in_flight)', ['state']),
  coordinatorUp: def('gauge', 'coordinator_up', '1 when the coordinator answered a ping during this scrape, else 0', ['worker', 'backend']),
  broadcastsRunning: def('gauge', 'broadcasts_running', 'Broadcast (Network) FFmpeg processes running on the worker that owns them', ['worker']),
  broadcastSegments: def('counter', 'broadcast_segments_total', 'HLS segments broadcasts wrote (counted when finished)'),
  broadcastCallbacks: def('counter', 'broadcast_callbacks_total', 'Broadcast callbacks sent to the editor, by event and result (timeout is usual: the editor starts the next programme inside its handler; never retried)', ['event', 'result']),
} as const;

/** Metrics of the host as a whole (the cluster primary, or the one process of start:single). */
export const HOST_METRICS = {
  buildInfo: def('gauge', 'build_info', 'Always 1; the version of the proxy and of Node', ['version', 'node_version']),
  workersExpected: def('gauge', 'workers_expected', 'HTTP workers the host should run (WORKERS)'),
  workersRunning: def('gauge', 'workers_running', 'HTTP workers listening now'),
  workerRestarts: def('counter', 'worker_restarts_total', 'Workers restarted after they exited', ['worker']),
  connectionsRefused: def('counter', 'connections_refused_total', 'New viewers (GET /stream/…) the primary answered 503 OVERLOADED itself: no worker took new viewers (each refusing them, none running, or none taking a connection for ADMISSION_QUEUE_MS)'),
  connectionsWaiting: def('gauge', 'connections_waiting', 'Connections the primary accepted that no worker has taken yet'),
  coordinatorUp: WORKER_METRICS.coordinatorUp,
} as const;

/** Route templates whose responses are byte streams: counted, never timed. */
export const STREAMING_ROUTES: ReadonlySet<string> = new Set(['/stream/:id']);

/**
 * prom-client default metrics that break Prometheus naming (gauges named `_total`, which
 * `promtool check metrics` rejects); the same figures remain by type in `nodejs_active_*`.
 */
export const DROPPED_DEFAULT_METRICS: ReadonlySet<string> = new Set([
  'nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total',
]);

/**
 * Options of prom-client's `collectDefaultMetrics` (process and Node figures, per process).
 * The event-loop delay histogram (`nodejs_eventloop_lag_*`) samples with a libuv timer; at
 * prom-client's default 10 ms that timer alone costs ~7 ms of CPU per second per process
 * (measured: Node 20, idle process), which is most of an idle proxy's CPU and shows in the
 * CPU-s per GB of a lightly used one. 50 ms keeps stalls of the size that hurt viewers
 * visible at a fifth of the wake-ups (Node docs: `perf_hooks.monitorEventLoopDelay`).
 */
export const DEFAULT_METRICS_OPTIONS = { eventLoopMonitoringPrecision: 50 } as const;

/** Every metric name this service defines (default process/Node metrics excluded). */
export const ALL_DEFINITIONS: MetricDefinition[] = [...new Map(
  [...Object.values(WORKER_METRICS), ...Object.values(HOST_METRICS)].map((d) => [d.name, d] as const),
).values()];
