// What the stream engine tells the outside world about events (not bytes): a viewer joined
// or left, an upstream connected or failed, an FFmpeg started or exited, a lease changed
// hands. Called once per event, never per chunk; byte and packet figures stay in plain
// fields (channel, viewer, source) and are read when someone asks (a metrics scrape).
// The metrics room implements it; the engine knows nothing of Prometheus.
import type { LeaseEvent } from '../coordination/lease-keeper.js';
import type { ViewerEndReason } from './live/viewer.js';

export type UpstreamErrorReason = 'connect_error' | 'http_error' | 'not_media' | 'chunk_timeout' | 'silent_close';
export type FfmpegExitReason = 'stopped' | 'ended' | 'input_error' | 'output_error' | 'error';

export interface StreamTelemetry {
  viewerJoined(): void;
  viewerLeft(reason: ViewerEndReason): void;
  /** A live viewer's connection moved to (in) or from (out) this worker (src/http/socket-handoff.ts). */
  viewerMoved(direction: 'out' | 'in'): void;
  /** A live viewer's first byte, `seconds` after its request arrived. */
  firstByte(start: 'warm' | 'cold', seconds: number): void;
  upstreamConnected(ok: boolean): void;
  upstreamError(reason: UpstreamErrorReason): void;
  failover(reason: string): void;
  ffmpegStarted(): void;
  ffmpegExited(reason: FfmpegExitReason): void;
  lease(event: LeaseEvent): void;
  /** A template rendered into an argv (render threads), in seconds. */
  rendered(seconds: number): void;
}

const noop = (): void => {};

/** For parts built without metrics (unit tests, tools). */
export const NO_TELEMETRY: StreamTelemetry = {
  viewerJoined: noop, viewerLeft: noop, viewerMoved: noop, firstByte: noop, upstreamConnected: noop, upstreamError: noop,
  failover: noop, ffmpegStarted: noop, ffmpegExited: noop, lease: noop, rendered: noop,
};
