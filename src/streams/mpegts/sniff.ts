// What an upstream body is, told by its first bytes, never by its Content-Type (providers
// label good MPEG-TS `text/html`, and Icecast radio sends raw ADTS AAC): MPEG-TS is a run of
// sync bytes (0x47) 188 bytes apart; a body starting with `<` (HTML, XML), `{` / `[` (JSON)
// or `#EXTM3U` (a playlist) is a document, not media; anything else is some other media
// (ADTS, MP3, FLV, …) to pass through as it is. Shared by the live channel and the failover
// triggers of http-source.

import { TS_PACKET_SIZE, TS_SYNC_BYTE } from './ts-packets.js';

/** Sync bytes in a row, 188 apart, that make a body MPEG-TS (one stray 0x47 does not). */
export const TS_SYNC_RUN = 5;
/** Bytes after which a body with no such run counts as other media. */
export const SNIFF_BYTES = TS_PACKET_SIZE * (TS_SYNC_RUN + 1);

export type Sniffed =
  | { kind: 'ts'; offset: number }
  | { kind: 'document'; what: string }
  | { kind: 'other' }
  | { kind: 'need_more' };

/** Offset of the first run of `TS_SYNC_RUN` sync bytes 188 apart starting in [from, from + 188), or -1. */
export function tsRunAt(buf: Buffer, from = 0, run = TS_SYNC_RUN): number {
  const last = Math.min(from + TS_PACKET_SIZE, buf.length - (run - 1) * TS_PACKET_SIZE);
  for (let i = from; i < last; i++) {
    let k = 0;
    while (k < run && buf[i + k * TS_PACKET_SIZE] === TS_SYNC_BYTE) k++;
    if (k === run) return i;
  }
  return -1;
}

function documentKind(buf: Buffer): string | null {
  let i = 0;
  if (buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) i = 3; // UTF-8 BOM
  while (i < buf.length && (buf[i] === 0x20 || buf[i] === 0x09 || buf[i] === 0x0a || buf[i] === 0x0d)) i++;
  if (i >= buf.length) return null;
  const c = buf[i];
  if (c === 0x3c) return 'an HTML/XML document';
  if (c === 0x7b || c === 0x5b) return 'a JSON document';
  if (buf.subarray(i, i + 7).toString('latin1') === '#EXTM3U') return 'a playlist';
  return null;
}

/** Whether a run of sync bytes starting in the first 188 bytes is still possible given `head`. */
function tsStillPossible(head: Buffer): boolean {
  if (head.length < TS_PACKET_SIZE) return true; // a start not seen yet
  for (let i = head.indexOf(TS_SYNC_BYTE); i >= 0 && i < TS_PACKET_SIZE; i = head.indexOf(TS_SYNC_BYTE, i + 1)) {
    let k = 1;
    while (i + k * TS_PACKET_SIZE < head.length && head[i + k * TS_PACKET_SIZE] === TS_SYNC_BYTE) k++;
    if (i + k * TS_PACKET_SIZE >= head.length) return true; // every byte seen so far fits
  }
  return false;
}

const isBlank = (b: number): boolean => b === 0x20 || b === 0x09 || b === 0x0a || b === 0x0d || b === 0xef || b === 0xbb || b === 0xbf;

/**
 * Decides what `head` (the first bytes of a body, as many as have arrived) is. `final`: no
 * more bytes will come, decide with what there is. The answer depends only on the bytes,
 * never on how they were split into reads.
 */
export function sniff(head: Buffer, final = false): Sniffed {
  // The first real byte decides a document before anything else, so a short first read and
  // a long one give the same answer.
  if (!final && head.every(isBlank)) return { kind: 'need_more' };
  const doc = documentKind(head);
  if (doc) return { kind: 'document', what: doc };
  // `#EXTM3U` needs 7 bytes to be told from any other `#…`.
  const first = head.findIndex((b) => !isBlank(b));
  if (!final && head[first] === 0x23 && head.length - first < 7) return { kind: 'need_more' };
  const offset = tsRunAt(head);
  if (offset >= 0) return { kind: 'ts', offset };
  if (final || head.length >= SNIFF_BYTES || !tsStillPossible(head)) return { kind: 'other' };
  return { kind: 'need_more' };
}
