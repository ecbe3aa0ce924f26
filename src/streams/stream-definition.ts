// What a stream is (its definition, stored in the coordinator so any worker can serve it)
// and how its id and kind are derived, compatible with the Python m3u-proxy.
import { createHash } from 'node:crypto';

export type StreamKind = 'live' | 'hls' | 'vod' | 'transcode';

export interface StreamDefinition {
  id: string;
  url: string;
  kind: StreamKind;
  failoverUrls: string[];
  failoverResolverUrl: string | null;
  userAgent: string | null;
  headers: Record<string, string>;
  metadata: Record<string, string>;
  strictLiveTs: boolean;
  useStickySession: boolean;
  /** Fields accepted and stored, not acted on yet (silence detection). */
  options: Record<string, string | number | boolean>;
  createdAt: string;
}

export const md5 = (s: string): string => createHash('md5').update(s).digest('hex');

export const streamIdForUrl = (url: string): string => md5(url);

const VOD_EXTENSIONS = /\.(mp4|mkv|webm|avi|mov|m4v)$/i;
const VOD_PATHS = /\/(movie|series|timeshift)\//i;

/** The kind a URL's path tells (query stripped); HLS is told by `.m3u8`. */
export function kindFromUrl(url: string): Exclude<StreamKind, 'transcode'> {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    path = url.split(/[?#]/)[0] ?? url;
  }
  if (/\.m3u8$/i.test(path)) return 'hls';
  if (VOD_EXTENSIONS.test(path) || VOD_PATHS.test(path)) return 'vod';
  return 'live';
}

/** The `stream_type` of API.md §3.4 entries. */
export function entryStreamType(kind: StreamKind): string {
  switch (kind) {
    case 'hls':
      return 'HLS';
    case 'vod':
      return 'VOD';
    case 'transcode':
      return 'Transcoding';
    default:
      return 'Live Continuous';
  }
}
