// What the broadcast tests need around the proxy: short lavfi-made programmes (BROADCAST.md
// §8: A = testsrc2 + 440 Hz, B = smptebars + 880 Hz, C = two audio languages + an SRT), and a
// fake m3u-editor callback receiver that behaves like the real one: it answers slowly, and
// on `programme_ended` it starts the next programme *inside* its handler (§1.3).
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** Polls `fn` until it gives a value (every 150 ms); throws after `timeoutMs`. */
export async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | null | undefined | false>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 150));
  }
}

export interface ProgrammeMedia {
  dir: string;
  A: string;
  B: string;
  C: string;
  srt: string;
  cleanup(): Promise<void>;
}

const SRT = '1\n00:00:00,000 --> 00:00:03,000\nHello\n\n2\n00:00:03,000 --> 00:00:09,000\nWorld\n\n';

/** Makes A.mp4, B.mp4 (`seconds` long, 2 s GOP) and C.mkv (eng 880 Hz + fra 220 Hz audio, an eng SRT). */
export async function makeProgrammes(seconds = 8): Promise<ProgrammeMedia> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'm3u-proxy-broadcast-media-'));
  const srt = path.join(dir, 'subs.srt');
  await writeFile(srt, SRT);
  const common = ['-hide_banner', '-nostdin', '-loglevel', 'error', '-y'];
  const video = ['-c:v', 'libx264', '-preset', 'ultrafast', '-pix_fmt', 'yuv420p', '-g', '50', '-keyint_min', '50', '-sc_threshold', '0'];
  const audio = ['-c:a', 'aac', '-b:a', '64k'];
  const file = (name: string) => path.join(dir, name);
  await Promise.all([
    exec('ffmpeg', [...common, '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
      '-t', String(seconds), ...video, ...audio, '-movflags', '+faststart', file('A.mp4')]),
    exec('ffmpeg', [...common, '-f', 'lavfi', '-i', 'smptebars=size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine=frequency=880:sample_rate=48000',
      '-t', String(seconds), ...video, ...audio, '-movflags', '+faststart', file('B.mp4')]),
    exec('ffmpeg', [...common, '-f', 'lavfi', '-i', 'testsrc=size=320x240:rate=25',
      '-f', 'lavfi', '-i', 'sine=frequency=880:sample_rate=48000', '-f', 'lavfi', '-i', 'sine=frequency=220:sample_rate=48000', '-i', srt,
      '-t', String(seconds), '-map', '0:v', '-map', '1:a', '-map', '2:a', '-map', '3:s', ...video, ...audio, '-c:s', 'srt',
      '-metadata:s:a:0', 'language=eng', '-metadata:s:a:1', 'language=fra', '-metadata:s:s:0', 'language=eng', file('C.mkv')]),
  ]);
  return { dir, A: file('A.mp4'), B: file('B.mp4'), C: file('C.mkv'), srt, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface ReceivedCallback {
  at: number;
  userAgent: string | undefined;
  contentType: string | undefined;
  body: {
    network_id: string;
    event: 'programme_ended' | 'broadcast_failed';
    timestamp: string;
    dvr_mode: boolean;
    hls_dir: string | null;
    data: Record<string, unknown>;
  };
}

export interface EditorStart {
  at: number;
  status: number;
  body: Record<string, unknown>;
}

/** The next programme the fake editor starts when `network` ends (`stream_url` and friends). */
export type NextProgramme = Record<string, unknown>;

export interface FakeEditor {
  callbackUrl: string;
  callbacks: ReceivedCallback[];
  /** Starts the editor made from inside its callback handler. */
  starts: EditorStart[];
  /** Queue the programme to start on the next plain `programme_ended` of `network`. */
  queueNext(network: string, programme: NextProgramme): void;
  waitForCallbacks(n: number, timeoutMs: number, filter?: (c: ReceivedCallback) => boolean): Promise<ReceivedCallback[]>;
  close(): Promise<void>;
}

/**
 * `proxyBase` is where the editor sends its starts; `token` its X-API-Token. The handler
 * answers after `answerDelayMs` *more* than the start took, so the proxy's 3 s callback
 * timeout always fires first, as with the real editor.
 */
export async function startFakeEditor(proxyBase: string, token: string, answerDelayMs = 1000): Promise<FakeEditor> {
  const callbacks: ReceivedCallback[] = [];
  const starts: EditorStart[] = [];
  const queued = new Map<string, NextProgramme[]>();
  const sockets = new Set<import('node:net').Socket>();

  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      void (async () => {
        if (req.method !== 'POST' || req.url !== '/cb') {
          res.writeHead(404).end();
          return;
        }
        const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as ReceivedCallback['body'];
        callbacks.push({ at: Date.now(), userAgent: req.headers['user-agent'], contentType: req.headers['content-type'], body });
        const next = queued.get(body.network_id);
        if (body.event === 'programme_ended' && !body.data.auto_transitioned && next && next.length > 0) {
          // The editor's sequence rule: F + 1 with a discontinuity, started synchronously.
          const programme = next.shift()!;
          const final = Number(body.data.final_segment_number);
          const r = await fetch(`${proxyBase}/broadcast/${body.network_id}/start`, {
            method: 'POST',
            headers: { 'Content-Type': 'application/json', Accept: 'application/json', 'X-API-Token': token },
            body: JSON.stringify({ segment_start_number: final + 1, add_discontinuity: true, next_stream_config: null, output_dir: null, ...programme }),
          });
          starts.push({ at: Date.now(), status: r.status, body: (await r.json()) as Record<string, unknown> });
        }
        await new Promise((r) => setTimeout(r, answerDelayMs));
        if (!res.destroyed) res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"ok":true}');
      })().catch(() => {
        if (!res.headersSent) res.writeHead(500).end();
      });
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    callbackUrl: `http://127.0.0.1:${port}/cb`,
    callbacks,
    starts,
    queueNext(network, programme) {
      const list = queued.get(network) ?? [];
      list.push(programme);
      queued.set(network, list);
    },
    async waitForCallbacks(n, timeoutMs, filter = () => true) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const hits = callbacks.filter(filter);
        if (hits.length >= n) return hits;
        if (Date.now() > deadline) {
          throw new Error(`timed out waiting for ${n} callback(s); got ${JSON.stringify(callbacks.map((c) => c.body))}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
