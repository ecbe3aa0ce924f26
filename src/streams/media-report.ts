// `media_info` and `output_media_info` of a /streams entry (API.md §9, upstream 0.4.x's shape)
// from what this worker sees of the stream: for a direct stream the channel's TS (PMT codecs,
// SPS size, ADTS channels) is the source's media and there is no output side; for a transcode
// the channel holds FFmpeg's output, so it is `output_media_info`, with FFmpeg's own figures
// (fps, bitrate, frame, speed). A worker that has no session of the stream reports `{}`.
import { mediaInfoOf, type MediaInfo, type OutputMediaInfo } from './mpegts/media-info.js';
import type { StreamRuntime } from './stream-engine.js';
import type { StreamKind } from './stream-definition.js';

export function mediaReport(
  kind: StreamKind,
  rt: Pick<StreamRuntime, 'program' | 'channelKbps' | 'transcode'>,
): { media_info: MediaInfo; output_media_info: OutputMediaInfo } {
  if (kind !== 'transcode') return { media_info: mediaInfoOf(rt.program, rt.channelKbps), output_media_info: {} };
  const t = rt.transcode;
  const out: OutputMediaInfo = mediaInfoOf(rt.program, t?.bitrate_kbps ?? rt.channelKbps);
  if (Object.keys(out).length > 0 && t) {
    if (t.fps !== null) out.fps = t.fps;
    if (t.frame !== null) out.frame = t.frame;
    if (t.speed !== null) out.speed = t.speed;
  }
  // The input side would need FFmpeg's stream lines (it runs with -loglevel error): not read.
  return { media_info: {}, output_media_info: out };
}
