// An HLS source played on /stream/{id} as one continuous MPEG-TS (API.md §4.1): the media
// playlist is polled (a master playlist picks its highest-bandwidth variant), its TS segments
// are written to the Channel in media-sequence order, AES-128 segments are decrypted, and the
// PAT/PMT are sent again before a segment after a discontinuity that does not start with them,
// so a TS-only player re-reads the programme. Fetches go through the HLS layer (HlsEngine), so
// TS viewers and HLS viewers of a stream share the same origin requests, via the owner.
import { setTimeout as sleep } from 'node:timers/promises';
import { createDecipheriv } from 'node:crypto';
import type { Logger } from '../../logger.js';
import type { Channel } from '../live/channel.js';
import type { OwnedSource } from '../live/live-session.js';
import { TS_PACKET_SIZE, TS_SYNC_BYTE, packetPid } from '../mpegts/ts-packets.js';
import type { StreamDefinition } from '../stream-definition.js';
import type { FetchedPlaylist } from './shared-fetcher.js';
import type { OpenedResource } from './hls-engine.js';
import { playlistFacts, type PlaylistFacts } from './playlist-rewrite.js';

export interface HlsTsSourceOptions {
  def: StreamDefinition;
  channel: Channel;
  logger: Logger;
  /** Names this reader for the HLS session's interest (e.g. `ts:{worker}`). */
  reader: string;
  playlist: (url: string) => Promise<FetchedPlaylist>;
  resource: (url: string) => Promise<OpenedResource>;
  /** Failed polls in a row before the stream ends. */
  retryAttempts: number;
  retryDelayMs: number;
}

/** Segments from the live edge a new reader starts with (as players do). */
const LIVE_EDGE_SEGMENTS = 3;
const MIN_POLL_MS = 500;

export class HlsTsSource implements OwnedSource {
  readonly pid = null;
  /** Segment bytes delivered into the channel (metrics). */
  bytesIn = 0;
  private stopped = false;
  private sentAny = false;
  /** The last PAT packet and its PMT packet seen, sent again after a discontinuity. */
  private tables: Buffer | null = null;
  private readonly keys = new Map<string, Buffer>();

  constructor(private readonly opts: HlsTsSourceOptions) {}

  start(): void {
    void this.run().catch((err: unknown) => {
      if (this.stopped) return;
      this.opts.logger.warn('HLS source failed', { stream_id: this.opts.def.id, error: String(err) });
      this.opts.channel.end(err instanceof Error ? err : new Error(String(err)));
    });
  }

  stop(): void {
    this.stopped = true;
  }

  private async run(): Promise<void> {
    let mediaUrl = this.opts.def.url;
    let last = -1;
    let failures = 0;
    let first = true;
    while (!this.stopped) {
      let facts: PlaylistFacts;
      try {
        const p = await this.opts.playlist(mediaUrl);
        if (p.status !== 200) throw new Error(`the playlist answered HTTP ${p.status}`);
        facts = playlistFacts(p.body.toString('utf8'), p.finalUrl);
        if (!facts.isPlaylist) throw new Error('the upstream answer is not an HLS playlist');
      } catch (err) {
        if (!this.sentAny || ++failures > this.opts.retryAttempts) throw err;
        await sleep(this.opts.retryDelayMs);
        continue;
      }
      failures = 0;
      if (facts.isMaster) {
        if (!facts.variants[0]) throw new Error('the master playlist lists no variant');
        mediaUrl = facts.variants[0];
        continue;
      }
      let segments = facts.segments;
      if (first && !facts.ended) segments = segments.slice(-LIVE_EDGE_SEGMENTS);
      first = false;
      for (const s of segments) {
        if (this.stopped) return;
        if (s.sequence <= last) continue;
        if (s.map) throw new Error('fMP4 (EXT-X-MAP) renditions cannot be played as MPEG-TS; use /hls/{id}/playlist.m3u8');
        const data = await this.segment(s);
        const jumped = last >= 0 && s.sequence !== last + 1;
        this.write(data, s.discontinuity || jumped);
        last = s.sequence;
      }
      if (facts.ended) {
        this.opts.channel.end();
        return;
      }
      await sleep(Math.max(MIN_POLL_MS, ((facts.targetDurationS ?? 2) * 1000) / 2));
    }
  }

  private async segment(s: PlaylistFacts['segments'][number]): Promise<Buffer> {
    const body = await this.bytes(s.uri);
    if (!s.key) return body;
    if (s.keyMethod !== 'AES-128') throw new Error(`${s.keyMethod} encryption cannot be played as MPEG-TS`);
    let key = this.keys.get(s.key);
    if (!key) {
      key = await this.bytes(s.key);
      this.keys.set(s.key, key);
    }
    // No IV attribute: the media sequence number, big-endian in 16 bytes (RFC 8216 §5.2).
    const iv = s.keyIv ?? Buffer.alloc(16);
    if (!s.keyIv) iv.writeUInt32BE(s.sequence >>> 0, 12);
    const d = createDecipheriv('aes-128-cbc', key, iv);
    return Buffer.concat([d.update(body), d.final()]);
  }

  private async bytes(url: string): Promise<Buffer> {
    const r = await this.opts.resource(url);
    if (r.status !== 200) throw new Error(`a segment answered HTTP ${r.status}`);
    const chunks: Buffer[] = [];
    for await (const c of r.body) chunks.push(c);
    return Buffer.concat(chunks);
  }

  private write(data: Buffer, discontinuity: boolean): void {
    if (this.stopped) return; // a segment fetched before the stop is not passed on
    const tables = findTables(data);
    if (discontinuity && this.tables && !(data[0] === TS_SYNC_BYTE && packetPid(data, 0) === 0)) {
      this.opts.channel.write(this.tables);
    }
    if (tables) this.tables = tables;
    this.bytesIn += data.length;
    this.opts.channel.write(data);
    this.sentAny = true;
  }
}

/** The first PAT packet of `data` and the PMT packet it names, concatenated; null if absent. */
export function findTables(data: Buffer): Buffer | null {
  let pat: Buffer | null = null;
  let pmtPid = -1;
  for (let off = 0; off + TS_PACKET_SIZE <= data.length; off += TS_PACKET_SIZE) {
    if (data[off] !== TS_SYNC_BYTE) return null;
    const pid = packetPid(data, off);
    const start = (data[off + 1]! & 0x40) !== 0;
    if (!pat && pid === 0 && start) {
      pat = data.subarray(off, off + TS_PACKET_SIZE);
      const p = off + 4 + (((data[off + 3]! >> 4) & 0x3) >= 2 ? data[off + 4]! + 1 : 0);
      const s = p + 1 + data[p]!; // after pointer_field
      // First programme with a number other than 0 (0 names the NIT).
      for (let e = s + 8; e + 4 <= off + TS_PACKET_SIZE; e += 4) {
        if (((data[e]! << 8) | data[e + 1]!) !== 0) {
          pmtPid = ((data[e + 2]! & 0x1f) << 8) | data[e + 3]!;
          break;
        }
      }
    } else if (pat && pid === pmtPid && start) {
      return Buffer.concat([pat, data.subarray(off, off + TS_PACKET_SIZE)]);
    }
  }
  return null;
}
