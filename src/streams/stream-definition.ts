// What a stream is (its definition, stored in the coordinator so any worker can serve it)
// and how its id and kind are derived, compatible with the Python m3u-proxy.
import { createHash } from 'node:crypto';

export type StreamKind = 'live' | 'hls' | 'vod' | 'transcode';

/** A transcode: the profile or template it was made from and the argv it rendered to. */
export interface TranscodeSpec {
  profile: string | null;
  template: string | null;
  variables: Record<string, string>;
  /** FFmpeg arguments (without the binary), the input URL already in place. */
  argv: string[];
  outputFormat: 'mpegts' | 'hls';
}

/**
 * A stream resolver (streamlink or yt-dlp) that turns the page URL into media: its checked
 * options (see resolvers/resolver-args.ts), streamlink's stream quality and a cookie file.
 */
export interface ResolverSpec {
  name: 'streamlink' | 'ytdlp';
  options: string[];
  quality: string | null;
  cookiesPath: string | null;
}

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
  transcode?: TranscodeSpec | null;
  /** Set: the URL is a page a resolver turns into media (a live stream, never VOD or HLS). */
  resolver?: ResolverSpec | null;
}

export const md5 = (s: string): string => createHash('md5').update(s).digest('hex');
export const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

export const streamIdForUrl = (url: string): string => md5(url);

const VOD_EXTENSIONS = /\.(mp4|mkv|webm|avi|mov|m4v)$/i;
const VOD_PATHS = /\/(movie|series|timeshift)\//i;

/** Whether a URL's path is under /movie/, /series/ or /timeshift/ (query stripped). */
export function isVodPath(url: string): boolean {
  try {
    return VOD_PATHS.test(new URL(url).pathname);
  } catch {
    return false;
  }
}

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

/**
 * The id of a transcode (compatible with m3u-proxy): md5 of `{url}|transcoded|{profile}|{mode}`,
 * where a built-in profile with no variables keeps its name and anything else becomes
 * `custom:` + the first 16 hex of sha256 of the rendered argv (two templates never collide).
 */
export function transcodeStreamId(url: string, spec: TranscodeSpec, hasVariables: boolean): string {
  const profile = spec.profile && !hasVariables ? spec.profile : `custom:${sha256(spec.argv.join('\0')).slice(0, 16)}`;
  return md5(`${url}|transcoded|${profile}|${spec.outputFormat === 'hls' ? 'hls' : 'direct'}`);
}
