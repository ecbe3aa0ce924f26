// The pure parts of /broadcast/*: the FFmpeg argv of BROADCAST.md §3.1 (order, maps, codecs,
// hardware variables, HLS flags), the start-body schema's lenience and refusals, the file-name
// rules of segment/{file} (a property test: no name outside the directory is ever served),
// numbers past 999,999 and the orphan sweep.
import { mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'chai';
import fc from 'fast-check';
import { CPU_VARIABLES, type HwVariables } from '../src/ffmpeg/hw-accel.js';
import { buildBroadcastArgv, type BroadcastArgvInput } from '../src/render/broadcast-argv.js';
import renderTask from '../src/render/render-task.js';
import { highestSegment, segmentNumber, servableFile, sweepOrphans } from '../src/streams/broadcast/broadcast-files.js';
import { confineInputs, exitCodeOf, recoverFrom } from '../src/streams/broadcast/broadcast-manager.js';
import { programmeFrom, startBroadcastSchema } from '../src/streams/broadcast/broadcast-schema.js';
import { parseBody } from '../src/http/schemas.js';
import { AppError } from '../src/errors.js';

const DIR = '/tmp/m3u-proxy-broadcasts/broadcast_n1';
const URL_A = 'http://origin.example/a.mp4#range=100-';

function input(extra: Partial<BroadcastArgvInput> = {}): BroadcastArgvInput {
  const body = parseBody(startBroadcastSchema, { stream_url: URL_A });
  return { ...programmeFrom(body), startNumber: 0, discontinuity: false, dvr: false, dir: DIR, subtitleSyncOffset: 1, ...extra };
}

/** The value after `opt` (the first occurrence after index `from`). */
const optValue = (argv: string[], opt: string, from = 0): string | undefined => {
  const i = argv.indexOf(opt, from);
  return i < 0 ? undefined : argv[i + 1];
};

const NVENC: HwVariables = {
  ...CPU_VARIABLES, type: 'nvenc', device: '/dev/nvidia0', HW: '-hwaccel cuda', ENC264: 'h264_nvenc', ENC265: 'hevc_nvenc',
  PRESET: 'p4', PRESET_ARGS: '-preset p4',
};
const VAAPI: HwVariables = {
  ...CPU_VARIABLES, type: 'vaapi', device: '/dev/dri/renderD128',
  HW: '-init_hw_device vaapi=va:/dev/dri/renderD128 -hwaccel vaapi -hwaccel_device va -filter_hw_device va',
  ENC264: 'h264_vaapi', ENC265: 'hevc_vaapi', PRESET: '', PRESET_ARGS: '', HWUPLOAD: ',format=nv12,hwupload',
};

describe('broadcast FFmpeg argv (BROADCAST.md §3.1)', () => {
  it('copy mode: seek before -re and the input, -t after the inputs, maps, copy codecs, HLS flags, output last', () => {
    const argv = buildBroadcastArgv(input({ seekSeconds: 30, durationSeconds: 600, startNumber: 41, discontinuity: true, headers: { 'X-Plex-Token': 'abc', Accept: '*/*' } }), CPU_VARIABLES);
    expect(argv.slice(0, 5)).to.deep.equal(['-y', '-ss', '30', '-re', '-reconnect']);
    expect(optValue(argv, '-headers')).to.equal('X-Plex-Token: abc\r\nAccept: */*\r\n');
    expect(argv.indexOf('-headers')).to.be.lessThan(argv.indexOf('-i'));
    expect(optValue(argv, '-i')).to.equal(URL_A); // the #fragment passes verbatim
    expect(argv.indexOf('-t')).to.be.greaterThan(argv.indexOf('-i'));
    expect(optValue(argv, '-t')).to.equal('600');
    expect(argv.join(' ')).to.include('-map 0:v:0? -map 0:a:0? -c:v copy -c:a copy');
    expect(argv).to.not.include('-c:s');
    expect(optValue(argv, '-hls_time')).to.equal('6');
    expect(optValue(argv, '-hls_list_size')).to.equal('20');
    expect(optValue(argv, '-start_number')).to.equal('41');
    expect(optValue(argv, '-hls_flags')).to.equal('delete_segments+program_date_time+omit_endlist+independent_segments+discont_start');
    expect(optValue(argv, '-hls_segment_filename')).to.equal(`${DIR}/live%06d.ts`);
    expect(argv[argv.length - 1]).to.equal(`${DIR}/live.m3u8`);
  });

  it('transcode on cpu: libx264 with the detected preset, bitrate, yadif before scale in one chain, aac 48 kHz stereo', () => {
    const argv = buildBroadcastArgv(input({ transcode: true, videoBitrate: '400', videoResolution: '320x180', deinterlace: true, audioBitrate: 128 }), CPU_VARIABLES);
    expect(argv.join(' ')).to.include('-c:v libx264 -preset veryfast -b:v 400k -vf yadif,scale=320x180 -c:a aac -b:a 128k -ar 48000 -ac 2');
  });

  it('transcode with detected nvenc / vaapi: their {HW}, encoder, preset and upload; a requested codec or hwaccel is taken literally', () => {
    const nv = buildBroadcastArgv(input({ transcode: true }), NVENC);
    expect(nv.slice(0, 3)).to.deep.equal(['-y', '-hwaccel', 'cuda']);
    expect(nv.join(' ')).to.include('-c:v h264_nvenc -preset p4 -c:a aac');
    const va = buildBroadcastArgv(input({ transcode: true, videoResolution: '1280x720' }), VAAPI);
    expect(va.join(' ')).to.include('-filter_hw_device va');
    expect(optValue(va, '-vf')).to.equal('scale=1280x720,format=nv12,hwupload');
    expect(va).to.not.include('-preset'); // vaapi has no presets (§7.11)
    const asked = buildBroadcastArgv(input({ transcode: true, hwaccel: 'cuda', videoCodec: 'h264_nvenc' }), VAAPI);
    expect(asked.slice(0, 3)).to.deep.equal(['-y', '-hwaccel', 'cuda']);
    expect(asked).to.not.include('-preset'); // null preset is not forced on nvenc
    expect(buildBroadcastArgv(input({ transcode: true, hwaccel: 'none' }), NVENC)).to.not.include('-hwaccel');
    expect(buildBroadcastArgv(input({ transcode: false, hwaccel: 'cuda' }), NVENC)).to.not.include('-hwaccel');
  });

  it('audio choice: a code maps by language without "?", digits by index', () => {
    expect(buildBroadcastArgv(input({ preferredAudioLanguage: 'fra' }), CPU_VARIABLES).join(' ')).to.include('-map 0:a:m:language:fra ');
    expect(buildBroadcastArgv(input({ preferredAudioLanguage: '1' }), CPU_VARIABLES).join(' ')).to.include('-map 0:a:1? ');
  });

  it('subtitles: external input with reconnect and headers plus language metadata; embedded second read without -re, -itsoffset, all tracks', () => {
    const ext = buildBroadcastArgv(input({ subtitlesEnabled: true, subtitleUrl: 'http://origin.example/s.srt', subtitleLanguage: 'eng', subtitleSeekSeconds: 5, headers: { A: 'b' } }), CPU_VARIABLES);
    const second = ext.lastIndexOf('-i');
    expect(ext[second + 1]).to.equal('http://origin.example/s.srt');
    expect(ext.slice(second - 10, second).join(' ')).to.include('-ss 5 -reconnect 1');
    expect(ext.slice(second - 2, second)).to.deep.equal(['-headers', 'A: b\r\n']);
    expect(ext.join(' ')).to.include('-map 1:s:0? ');
    expect(optValue(ext, '-metadata:s:s:0')).to.equal('language=eng');
    const emb = buildBroadcastArgv(input({ subtitlesEnabled: true, seekSeconds: 7 }), CPU_VARIABLES);
    const i2 = emb.lastIndexOf('-i');
    expect(emb[i2 + 1]).to.equal(URL_A);
    const secondInput = emb.slice(emb.indexOf('-itsoffset'), i2);
    expect(secondInput).to.include.members(['-itsoffset', '1', '-ss', '7']);
    expect(secondInput).to.not.include('-re');
    expect(emb.join(' ')).to.include('-map 1:s? ');
    expect(emb.slice(-3, -1)).to.deep.equal(['-avoid_negative_ts', 'make_zero']);
    expect(buildBroadcastArgv(input({ subtitlesEnabled: true, subtitleLanguage: '2' }), CPU_VARIABLES).join(' ')).to.include('-map 1:s:2? ');
  });

  it('DVR keeps every segment (list 0, no delete_segments, EVENT playlist)', () => {
    const argv = buildBroadcastArgv(input({ dvr: true }), CPU_VARIABLES);
    expect(optValue(argv, '-hls_list_size')).to.equal('0');
    expect(optValue(argv, '-hls_playlist_type')).to.equal('event');
    expect(optValue(argv, '-hls_flags')).to.not.include('delete_segments');
  });

  it('every http(s) input is confined to network protocols, https with the TLS choice', () => {
    const argv = confineInputs(buildBroadcastArgv(input({ streamUrl: 'https://o.example/a.mp4', subtitlesEnabled: true, subtitleUrl: 'http://o.example/s.srt' }), CPU_VARIABLES), true);
    const inputs = argv.flatMap((t, i) => (t === '-i' ? [i] : []));
    expect(inputs).to.have.length(2);
    expect(argv.slice(inputs[0]! - 4, inputs[0])).to.deep.equal(['-protocol_whitelist', 'http,https,tcp,tls,crypto,httpproxy', '-tls_verify', '1']);
    expect(argv.slice(inputs[1]! - 2, inputs[1])).to.deep.equal(['-protocol_whitelist', 'http,https,tcp,tls,crypto,httpproxy']);
  });

  it('renders in the render task like a transcode template', async () => {
    const out = await renderTask({ profilesDir: '/nonexistent', profile: null, template: null, variables: {}, inputUrl: URL_A, hlsDir: DIR, hw: CPU_VARIABLES, broadcast: input() });
    expect(out).to.not.have.property('error');
    expect((out as { argv: string[] }).argv).to.deep.equal(buildBroadcastArgv(input(), CPU_VARIABLES));
    expect((out as { outputFormat: string }).outputFormat).to.equal('hls');
  });

  it('refuses argv words that are not names (a schema bypass still cannot smuggle an option value)', () => {
    expect(() => buildBroadcastArgv(input({ videoCodec: 'libx264 -f' }), CPU_VARIABLES)).to.throw(AppError);
    expect(() => buildBroadcastArgv(input({ videoBitrate: '1k' }), CPU_VARIABLES)).to.throw(AppError);
  });
});

describe('broadcast start body (BROADCAST.md §2.1)', () => {
  it('is lenient like Pydantic: numeric strings for ints, "true" for bools, a number for video_bitrate, unknown fields ignored', () => {
    const b = parseBody(startBroadcastSchema, {
      stream_url: URL_A, seek_seconds: '12', segment_start_number: '1000000', add_discontinuity: 'true', transcode: 1,
      video_bitrate: 2500, surprise: { x: 1 }, next_stream_config: null, output_dir: null,
    });
    expect(b).to.include({ seek_seconds: 12, segment_start_number: 1_000_000, add_discontinuity: true, transcode: true, video_bitrate: '2500' });
    expect(b).to.not.have.property('surprise');
  });

  it('answers 422 with a sentence detail for a local file, script content, a missing URL, or an option in a codec', () => {
    for (const body of [{ stream_url: 'file:///etc/passwd' }, { stream_url: 'http://x/<script>' }, {}, { stream_url: URL_A, video_codec: 'x -y' }, { stream_url: URL_A, preset: 'a b' }]) {
      try {
        parseBody(startBroadcastSchema, body);
        expect.fail(`accepted ${JSON.stringify(body)}`);
      } catch (err) {
        expect(err).to.be.instanceOf(AppError);
        expect((err as AppError).status).to.equal(422);
        expect((err as AppError).message).to.be.a('string');
      }
    }
  });

  it('next_stream_config takes segment_duration, hls_list_size and callback_url from the outer request when missing', () => {
    const next = programmeFrom({ stream_url: URL_A }, { segmentDuration: 2, hlsListSize: 5, callbackUrl: 'http://e/cb' });
    expect(next).to.include({ segmentDuration: 2, hlsListSize: 5, callbackUrl: 'http://e/cb', seekSeconds: 0, transcode: false });
  });
});

describe('broadcast files (BROADCAST.md §3.3, §7.3, §7.9)', () => {
  let dir: string;
  let outside: string;
  before(async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'm3u-proxy-bfiles-'));
    dir = path.join(root, 'broadcast_n1');
    outside = path.join(root, 'broadcast_n2');
    await mkdir(dir);
    await mkdir(outside);
    for (const n of ['live.m3u8', 'live_vtt.m3u8', 'live000001.ts', 'live1000000.ts', 'live7.vtt', 'notes.txt']) await writeFile(path.join(dir, n), n);
    await writeFile(path.join(outside, 'live.m3u8'), 'other network');
    await symlink('/etc/passwd', path.join(dir, 'live000099.ts'));
  });
  after(async () => rm(path.dirname(dir), { recursive: true, force: true }));

  it('numbers past 999,999 parse (7+ digits), and 5 digits are not a segment', async () => {
    expect(segmentNumber('live1000000.ts')).to.equal(1_000_000);
    expect(segmentNumber('live000123.ts')).to.equal(123);
    expect(segmentNumber('live12345.ts')).to.equal(null);
    expect(await highestSegment(dir)).to.equal(1_000_000);
  });

  it('serves its own media names only; a symlink, other names and any path form are refused', async () => {
    for (const ok of ['live.m3u8', 'live_vtt.m3u8', 'live000001.ts', 'live1000000.ts', 'live7.vtt']) {
      expect(await servableFile(dir, ok), ok).to.equal(path.join(dir, ok));
    }
    for (const bad of ['notes.txt', 'live000099.ts', '../broadcast_n2/live.m3u8', '/etc/passwd', 'live.m3u8/..', 'live000001.ts\0', '.', '']) {
      expect(await servableFile(dir, bad), bad).to.equal(null);
    }
  });

  it('property: whatever the name, a served path is a regular file directly inside the directory', async () => {
    const alphabet = fc.constantFrom('l', 'i', 'v', 'e', '0', '1', '.', '/', '\\', 't', 's', 'm', '3', 'u', '8', '_', '%', '2', 'f', '\0', 'x');
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 40 }), fc.array(alphabet, { maxLength: 30 }).map((a) => a.join(''))), async (name) => {
        const served = await servableFile(dir, name);
        if (served !== null) {
          expect(path.dirname(served)).to.equal(dir);
          expect(served).to.not.equal(path.join(dir, 'live000099.ts'));
        }
      }),
      { numRuns: 500 },
    );
  });

  it('the orphan sweep removes unlisted .ts and .vtt older than the age, keeps listed and young ones', async () => {
    const d = path.join(path.dirname(dir), 'sweep');
    await mkdir(d);
    await writeFile(path.join(d, 'live.m3u8'), '#EXTM3U\n#EXTINF:2,\nlive000005.ts\n');
    await writeFile(path.join(d, 'live_vtt.m3u8'), '#EXTM3U\n#EXTINF:2,\nlive5.vtt\n');
    for (const n of ['live000003.ts', 'live000004.ts', 'live000005.ts', 'live3.vtt', 'live5.vtt']) await writeFile(path.join(d, n), n);
    const old = new Date(Date.now() - 120_000);
    for (const n of ['live000003.ts', 'live3.vtt', 'live000005.ts']) await utimes(path.join(d, n), old, old);
    expect(await sweepOrphans(d, 60_000)).to.equal(2); // live000003.ts and live3.vtt; live000004.ts is young
    expect(await sweepOrphans(d, 0)).to.equal(1); // live000004.ts at any age
  });
});

describe('broadcast exits and the track recovery (BROADCAST.md §3.1, §4.1)', () => {
  const exit = (lastError: string | null, code: number | null = 1, signal: NodeJS.Signals | null = null) =>
    ({ code, signal, errorClass: null, lastError, stoppedByUs: false });
  it('a signal kill is a negative code', () => {
    expect(exitCodeOf(exit(null, null, 'SIGKILL'))).to.equal(-9);
    expect(exitCodeOf(exit(null, 0))).to.equal(0);
  });
  it('drops the audio or subtitle language FFmpeg could not map, or subtitles it cannot turn into WebVTT', () => {
    const p = { ...input(), callbackUrl: null, preferredAudioLanguage: 'zz', subtitleLanguage: 'xx', subtitlesEnabled: true };
    expect(recoverFrom(exit("Stream map '0:a:m:language:zz' matches no streams."), p)?.preferredAudioLanguage).to.equal(null);
    expect(recoverFrom(exit("Stream map '1:s:m:language:xx' matches no streams."), p)?.subtitleLanguage).to.equal(null);
    expect(recoverFrom(exit('Subtitle encoding currently only possible from text to text or bitmap to bitmap'), p)?.subtitlesEnabled).to.equal(false);
    expect(recoverFrom(exit('Server returned 404 Not Found'), p)).to.equal(null);
  });
});
