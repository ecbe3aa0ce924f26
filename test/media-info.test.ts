// media_info / output_media_info: codecs from the PMT, picture size from the H.264 SPS, audio
// channels from ADTS, on files FFmpeg writes and on streams played through the proxy.
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { TsPacketizer } from '../src/streams/mpegts/ts-packets.js';
import { mediaInfoOf } from '../src/streams/mpegts/media-info.js';
import { apiCall } from './support/api-call.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { openViewer, waitFor } from './support/ts-viewer.js';

const run = promisify(execFile);

describe('media_info from the MPEG-TS (PMT, SPS, ADTS)', function () {
  this.timeout(90_000);
  let dir: string;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'media-info-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function encode(name: string, args: string[]): Promise<Buffer> {
    const out = path.join(dir, name);
    await run('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-y', ...args, '-t', '0.5', '-f', 'mpegts', out]);
    return readFile(out);
  }

  const infoOf = (ts: Buffer) => {
    const p = new TsPacketizer();
    // Odd-sized reads, as sockets deliver them.
    for (let off = 0; off < ts.length; off += 1000) p.push(ts.subarray(off, off + 1000));
    return mediaInfoOf(p.program, null);
  };

  it('H.264 1920x1080 (cropped SPS) with 5.1 AAC', async () => {
    const ts = await encode('hd.ts', [
      '-f', 'lavfi', '-i', 'testsrc2=size=1920x1080:rate=25', '-f', 'lavfi', '-i', 'sine', '-ac', '6',
      '-c:v', 'libx264', '-preset', 'ultrafast', '-c:a', 'aac',
    ]);
    expect(infoOf(ts)).to.deep.equal({ container: 'mpegts', video_codec: 'h264', resolution: '1920x1080', audio_codec: 'aac', audio_channels: 6 });
  });

  it('H.264 High profile with an odd size, stereo', async () => {
    const ts = await encode('odd.ts', [
      '-f', 'lavfi', '-i', 'testsrc2=size=854x480:rate=25', '-f', 'lavfi', '-i', 'sine', '-ac', '2',
      '-c:v', 'libx264', '-profile:v', 'high', '-preset', 'ultrafast', '-c:a', 'aac',
    ]);
    expect(infoOf(ts)).to.include({ video_codec: 'h264', resolution: '854x480', audio_channels: 2 });
  });

  it('MPEG-2 video with AC-3, as ATSC stream type and as a DVB descriptor', async () => {
    const atsc = await encode('atsc.ts', ['-f', 'lavfi', '-i', 'testsrc2=size=320x240', '-f', 'lavfi', '-i', 'sine', '-c:v', 'mpeg2video', '-c:a', 'ac3']);
    expect(infoOf(atsc)).to.deep.equal({ container: 'mpegts', video_codec: 'mpeg2video', audio_codec: 'ac3' });
    const dvb = await encode('dvb.ts', [
      '-f', 'lavfi', '-i', 'testsrc2=size=320x240', '-f', 'lavfi', '-i', 'sine', '-c:v', 'mpeg2video', '-c:a', 'ac3', '-mpegts_flags', 'system_b',
    ]);
    expect(infoOf(dvb)).to.include({ audio_codec: 'ac3' });
  });

  it('HEVC and MP2: codecs known, size not read (no HEVC SPS parser)', async () => {
    const ts = await encode('hevc.ts', ['-f', 'lavfi', '-i', 'testsrc2=size=320x240', '-f', 'lavfi', '-i', 'sine', '-c:v', 'libx265', '-preset', 'ultrafast', '-x265-params', 'log-level=error', '-c:a', 'mp2']);
    expect(infoOf(ts)).to.deep.equal({ container: 'mpegts', video_codec: 'hevc', audio_codec: 'mp2' });
  });

  it('the PMT is parsed again only when it changes', async () => {
    const ts = await encode('same.ts', ['-f', 'lavfi', '-i', 'testsrc2=size=320x240', '-c:v', 'libx264', '-preset', 'ultrafast', '-pat_period', '0.05']);
    const p = new TsPacketizer();
    p.push(ts.subarray(0, 188 * 20));
    const first = p.program;
    expect(first).to.not.equal(null);
    p.push(ts.subarray(188 * 20, ts.length - (ts.length % 188)));
    expect(p.program, 'the same programme object after many repeated PMTs').to.equal(first);
    const other = await encode('other.ts', ['-f', 'lavfi', '-i', 'testsrc2=size=320x240', '-c:v', 'mpeg2video']);
    p.push(other);
    expect(p.program).to.not.equal(first);
    expect(mediaInfoOf(p.program, null).video_codec).to.equal('mpeg2video');
  });

  describe('on /streams', () => {
    let origin: Origin;
    let proxy: TestProxy;
    before(async () => {
      origin = await startOrigin();
      proxy = await startProxy({ SHARED_STREAM_GRACE: '0.3' });
    });
    after(async () => {
      await proxy?.close();
      await origin?.close();
    });

    type Entry = { stream_id: string; media_info: Record<string, unknown>; output_media_info: Record<string, unknown> };
    const entryOf = async (id: string) => (await apiCall<{ streams: Entry[] }>(proxy.base, '/streams')).body.streams.find((s) => s.stream_id === id)!;

    it('a direct stream: media_info from its TS, output_media_info {}; {} before anyone plays it', async () => {
      const created = await apiCall<{ stream_id: string }>(proxy.base, '/streams', { method: 'POST', body: { url: origin.url('/live/media-info.ts') } });
      const id = created.body.stream_id;
      expect(await entryOf(id)).to.deep.include({ media_info: {}, output_media_info: {} });
      const v = openViewer(proxy.url(`/stream/${id}`));
      try {
        expect(await v.status).to.equal(200);
        await waitFor(async () => {
          const m = (await entryOf(id)).media_info;
          return m.resolution !== undefined && m.audio_channels !== undefined;
        }, 20_000, 'the resolution and the audio channels');
        const e = await entryOf(id);
        expect(e.media_info).to.deep.include({ container: 'mpegts', video_codec: 'h264', resolution: '320x240', audio_codec: 'aac', audio_channels: 1 });
        expect(e.media_info.bitrate_kbps).to.be.a('number').greaterThan(100);
        expect(e.output_media_info).to.deep.equal({});
      } finally {
        v.close();
      }
    });

    it('a transcode: output_media_info from FFmpeg output with fps, frame and speed', async () => {
      const created = await apiCall<{ stream_id: string }>(proxy.base, '/transcode', {
        method: 'POST',
        body: { url: origin.url('/live/media-info-tx.ts'), profile: '-i {input_url} -c:v libx264 -preset ultrafast -s 160x120 -c:a aac -ac 2 {output_args}' },
      });
      expect(created.status, JSON.stringify(created.body)).to.equal(200);
      const id = created.body.stream_id;
      const v = openViewer(proxy.url(`/stream/${id}`));
      try {
        expect(await v.status).to.equal(200);
        await waitFor(async () => {
          const o = (await entryOf(id)).output_media_info;
          return o.resolution !== undefined && o.frame !== undefined && o.audio_channels !== undefined;
        }, 30_000, 'output media info');
        const e = await entryOf(id);
        expect(e.output_media_info).to.deep.include({ container: 'mpegts', video_codec: 'h264', resolution: '160x120', audio_codec: 'aac', audio_channels: 2 });
        expect(e.output_media_info.frame).to.be.a('number').greaterThan(0);
        expect(e.output_media_info.speed).to.be.a('number');
        expect(e.media_info).to.deep.equal({});
      } finally {
        v.close();
      }
    });
  });
});
