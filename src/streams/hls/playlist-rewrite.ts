// Line-based rewriting of HLS playlists: every URI (URI lines and `URI="…"` attributes) is
// passed to a mapper; every other byte of the playlist is kept as it was, including tags no
// parser knows (hls-parser drops those when it serialises, so it is used to parse only).
import HLS from 'hls-parser';

/** What a URI points at: a playlist (variant, rendition) or a resource (segment, key, map, part). */
export type UriKind = 'playlist' | 'resource';

/** Tags whose URI attribute names a playlist; every other URI attribute names a resource. */
const PLAYLIST_TAGS = new Set(['EXT-X-MEDIA', 'EXT-X-I-FRAME-STREAM-INF', 'EXT-X-RENDITION-REPORT']);
const URI_ATTR = /([:,])URI="([^"]*)"/g;

/**
 * Rewrites every URI of `text` with `map(uri, kind)`. URI lines of a master playlist (after
 * `#EXT-X-STREAM-INF`) are playlists; URI lines of a media playlist are segments.
 */
export function rewritePlaylist(text: string, map: (uri: string, kind: UriKind) => string): string {
  const master = /^#EXT-X-STREAM-INF/m.test(text);
  return text
    .split('\n')
    .map((raw) => {
      const cr = raw.endsWith('\r') ? '\r' : '';
      const line = cr ? raw.slice(0, -1) : raw;
      const trimmed = line.trim();
      if (trimmed === '') return raw;
      if (!trimmed.startsWith('#')) return map(trimmed, master ? 'playlist' : 'resource') + cr;
      const tag = /^#([A-Z0-9-]+)/.exec(trimmed)?.[1];
      if (!tag || !line.includes('URI="')) return raw;
      const kind: UriKind = PLAYLIST_TAGS.has(tag) ? 'playlist' : 'resource';
      return line.replace(URI_ATTR, (_m, sep: string, uri: string) => `${sep}URI="${map(uri, kind)}"`) + cr;
    })
    .join('\n');
}

export interface PlaylistFacts {
  isPlaylist: boolean;
  isMaster: boolean;
  /** EXT-X-TARGETDURATION in seconds (media playlists), else null. */
  targetDurationS: number | null;
  /** #EXT-X-ENDLIST present. */
  ended: boolean;
  /** Segments in order: absolute URI (resolved against `base`), media sequence, discontinuity, duration. */
  segments: Array<{
    uri: string; sequence: number; discontinuity: boolean; durationS: number;
    /** EXT-X-KEY URI (resolved), its METHOD and IV (16 bytes) when given. */
    key: string | null; keyMethod: string | null; keyIv: Buffer | null;
    map: string | null;
  }>;
  /** Variant URIs of a master playlist (resolved), highest bandwidth first. */
  variants: string[];
}

/** Facts of a playlist (parsed with hls-parser); isPlaylist false for anything else. */
export function playlistFacts(text: string, base: string): PlaylistFacts {
  const none: PlaylistFacts = { isPlaylist: false, isMaster: false, targetDurationS: null, ended: false, segments: [], variants: [] };
  if (!text.trimStart().startsWith('#EXTM3U')) return none;
  let parsed: ReturnType<typeof HLS.parse>;
  try {
    parsed = HLS.parse(text);
  } catch {
    return { ...none, isPlaylist: true };
  }
  const abs = (u: string): string => {
    try {
      return new URL(u, base).toString();
    } catch {
      return u;
    }
  };
  if (parsed.isMasterPlaylist) {
    const variants = [...(parsed as HLS.types.MasterPlaylist).variants]
      .sort((a, b) => (b.bandwidth ?? 0) - (a.bandwidth ?? 0))
      .map((v) => abs(v.uri));
    return { ...none, isPlaylist: true, isMaster: true, variants };
  }
  const media = parsed as HLS.types.MediaPlaylist;
  return {
    ...none,
    isPlaylist: true,
    targetDurationS: media.targetDuration ?? null,
    ended: media.endlist,
    segments: media.segments.map((s) => ({
      uri: abs(s.uri),
      sequence: s.mediaSequenceNumber,
      discontinuity: s.discontinuity === true,
      durationS: s.duration,
      key: s.key?.uri && s.key.method !== 'NONE' ? abs(s.key.uri) : null,
      keyMethod: s.key?.method ?? null,
      keyIv: s.key?.iv ? Buffer.from(s.key.iv) : null,
      map: s.map?.uri ? abs(s.map.uri) : null,
    })),
  };
}
