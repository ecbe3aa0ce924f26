// Issue 13, input 2: a template may use only allow-listed options and filters; anything that
// names a file is refused with 400 TEMPLATE_INVALID whatever the operator adds; FFmpeg's input
// is confined with -protocol_whitelist (and -tls_verify for https) at spawn.
import { expect } from 'chai';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import request from 'supertest';
import winston from 'winston';
import { AppError } from '../src/errors.js';
import { FfmpegProcess } from '../src/ffmpeg/ffmpeg-process.js';
import { DENIED_FILTERS, templateAllowList } from '../src/render/allow-list.js';
import { validateArgv } from '../src/render/template.js';
import { confineInput, INPUT_PROTOCOLS } from '../src/streams/transcode/input-confinement.js';
import { testApp } from './support/proxy.js';

const URL_IN = 'http://127.0.0.1:9/live/u/p/1.ts';
const HLS_DIR = '/tmp/m3u-proxy-hls/s1';
const argvWith = (...mid: string[]): string[] => ['-i', URL_IN, ...mid, '-f', 'mpegts', 'pipe:1'];

function refusal(argv: string[], allow = templateAllowList()): string {
  try {
    validateArgv(argv, { inputUrl: URL_IN, hlsDir: HLS_DIR, allow });
  } catch (err) {
    expect(err).to.be.instanceOf(AppError);
    expect((err as AppError).code).to.equal('TEMPLATE_INVALID');
    expect((err as AppError).status).to.equal(400);
    return (err as AppError).message;
  }
  return expect.fail(`accepted: ${argv.join(' ')}`);
}

// Every filter option of FFmpeg that takes a file name, as the issue lists them and more.
const FILE_FILTERS = [
  'deshake=filename=/tmp/x.log', "deshake='filename=/tmp/x.log'", 'deshake=rx=16:filename=/tmp/x',
  'movie=/etc/passwd', 'amovie=/etc/passwd', "subtitles='/etc/x.srt'", 'ass=/etc/x.ass',
  'lut3d=file=/etc/x.cube', 'lut3d=/etc/x.cube', '[in]sendcmd=f=/tmp/c.txt,null', 'zmq', 'azmq',
  'drawtext=fontfile=/etc/passwd:text=x', 'drawtext=textfile=/etc/passwd', 'vidstabdetect=result=/tmp/t',
  'signature=filename=/tmp/s', 'psnr=stats_file=/tmp/p', 'ssim=stats_file=/tmp/s', 'ladspa=file=x',
  'arnndn=m=/tmp/m', 'sofalizer=sofa=/tmp/s', 'frei0r=filter_name=x', 'libvmaf=log_path=/tmp/v',
  'scale=1:1,metadata=mode=print:file=/tmp/m', 'scale=1:1;movie=x[a]', 'scale@x=1:1,amovie@y=/etc/passwd',
];

describe('template allow-list and input confinement (issue 13: input 2)', function () {
  this.timeout(30_000);

  it('refuses every filter that opens a file and every filter option that names one', () => {
    for (const graph of FILE_FILTERS) {
      expect(refusal(argvWith('-vf', graph)), graph).to.match(/not allowed|allow-list|file|movie/);
      expect(refusal(argvWith('-filter_complex', graph)), graph).to.be.a('string');
    }
  });

  it('refuses options outside the allow-list and options that read or write files', () => {
    for (const [opt, value] of [
      ['-pass', '1'], ['-passlogfile', '/tmp/x'], ['-vstats_file', '/tmp/x'], ['-dump_attachment:t', '/tmp/x'],
      ['-attach', '/etc/passwd'], ['-filter_script:v', '/tmp/f'], ['-protocol_whitelist', 'file,http'],
      ['-tls_verify', '0'], ['-sdp_file', '/tmp/s'], ['-hls_key_info_file', '/tmp/k'], ['-fpre', '/tmp/p'],
      ['-some_new_option', 'x'], ['-listen', '1'],
    ] as const) {
      expect(refusal(argvWith(opt, value)), opt).to.match(/not allowed|allow-list/);
    }
    // Found by the property test: a repeated option must not hide its first value.
    expect(refusal(['-i', URL_IN, '-f', 'hls', '-hls_segment_filename', '/etc/passwd', '-hls_segment_filename', `${HLS_DIR}/s%d.ts`, `${HLS_DIR}/index.m3u8`]))
      .to.match(/inside the HLS directory/);
    for (const params of ['pass=1:stats=/tmp/x264.log', 'deshake=filename=/tmp/x', 'csv=/tmp/x.csv', 'analysis-save=/tmp/a', 'qpfile=/tmp/q']) {
      expect(refusal(argvWith('-x265-params', params)), params).to.match(/names a file/);
      expect(refusal(argvWith('-x264-params', params)), params).to.match(/names a file/);
    }
  });

  it('accepts what the built-in profiles and common templates use', () => {
    const ok = [
      argvWith('-sn', '-dn', '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '23', '-maxrate', '4M', '-bufsize', '8M', '-g', '50',
        '-vf', 'scale=-2:720,format=yuv420p', '-c:a', 'aac', '-b:a', '128k'),
      argvWith('-c:v', 'libx265', '-x265-params', 'log-level=error', '-vf', 'yadif,fps=30000/1001,setsar=1/1,scale=iw/2:ih/2'),
      argvWith('-vf', "drawtext=text='Hi, there':x=10:y=10", '-af', 'aresample=async=1,volume=0.5', '-c:a', 'aac'),
      ['-hwaccel', 'cuda', '-i', URL_IN, '-c:v', 'h264_nvenc', '-preset', 'p4', '-f', 'mpegts', 'pipe:1'],
      ['-i', URL_IN, '-c', 'copy', '-f', 'hls', '-hls_time', '4', '-hls_flags', 'delete_segments',
        '-hls_segment_filename', `${HLS_DIR}/seg_%05d.ts`, `${HLS_DIR}/index.m3u8`],
    ];
    for (const argv of ok) validateArgv(argv, { inputUrl: URL_IN, hlsDir: HLS_DIR });
  });

  it('the operator extends the lists, but never past the deny-lists or a file option', () => {
    const extended = templateAllowList(['-my_option'], ['deshake', 'movie', 'lut3d']);
    validateArgv(argvWith('-vf', 'deshake=rx=16:ry=16', '-my_option', '1'), { inputUrl: URL_IN, hlsDir: HLS_DIR, allow: extended });
    expect(refusal(argvWith('-vf', 'deshake=rx=16'))).to.match(/allow-list/); // not without the operator
    expect(refusal(argvWith('-vf', 'deshake=filename=/tmp/x'), extended)).to.match(/filename= is not allowed/);
    // deshake's 11th positional argument is its file name
    expect(refusal(argvWith('-vf', 'deshake=-1:-1:-1:-1:16:16:0:8:125:0:/tmp/x.log'), extended)).to.match(/file path/);
    expect(refusal(argvWith('-vf', 'movie=/etc/passwd'), extended)).to.match(/not allowed|movie/);
    expect(refusal(argvWith('-vf', 'lut3d=x.cube'), extended)).to.match(/not allowed/);
    for (const f of ['movie', 'lut3d', 'sendcmd', 'zmq', 'subtitles']) expect(DENIED_FILTERS.has(f)).to.equal(true);
  });

  it('POST /transcode answers 400 TEMPLATE_INVALID JSON, also with an operator list that names a denied filter', async () => {
    const t = testApp({ TEMPLATE_ALLOWED_FILTERS: 'deshake,movie' });
    try {
      const out = path.join(os.tmpdir(), `issue13-${process.pid}.log`);
      for (const vf of [`deshake=filename=${out}`, `movie=${out}`, `deshake=rx=16:filename=${out}`]) {
        const res = await request(t.app).post('/transcode')
          .send({ url: URL_IN, profile: `-i {input_url} -vf "${vf}" -c:v libx264 {output_args}` });
        expect(res.status, vf).to.equal(400);
        expect(res.body.code).to.equal('TEMPLATE_INVALID');
        expect(res.body.detail).to.not.include('/u/p/'); // no credentials of the URL in the detail
      }
      const ok = await request(t.app).post('/transcode')
        .send({ url: URL_IN, profile: '-i {input_url} -vf "deshake=rx=16" -c:v libx264 {output_args}' });
      expect(ok.status, JSON.stringify(ok.body)).to.equal(200);
      expect(existsSync(out)).to.equal(false);
    } finally {
      await t.close();
      await t.closeParts();
    }
  });

  it('confines the input at spawn: -protocol_whitelist before -i, -tls_verify for https only', () => {
    const argv = ['-user_agent', 'UA', '-i', 'https://h/x.ts', '-c', 'copy', '-f', 'mpegts', 'pipe:1'];
    expect(confineInput(argv, { tlsVerify: true })).to.deep.equal(
      ['-user_agent', 'UA', '-protocol_whitelist', INPUT_PROTOCOLS, '-tls_verify', '1', '-i', 'https://h/x.ts', '-c', 'copy', '-f', 'mpegts', 'pipe:1']);
    expect(confineInput(argv, { tlsVerify: false })).to.include.members(['-tls_verify', '0']);
    const plain = confineInput(['-i', 'http://h/x.ts', '-f', 'mpegts', 'pipe:1'], { tlsVerify: true });
    expect(plain).to.deep.equal(['-protocol_whitelist', INPUT_PROTOCOLS, '-i', 'http://h/x.ts', '-f', 'mpegts', 'pipe:1']);
    expect(INPUT_PROTOCOLS.split(',')).to.include.members(['http', 'https', 'tcp', 'tls', 'crypto']);
    expect(INPUT_PROTOCOLS.split(',')).to.not.include.members(['file']);
    expect(INPUT_PROTOCOLS.split(',')).to.not.include('pipe');
  });

  it('real FFmpeg with the confined argv refuses an HLS playlist whose segment is a local file', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'issue13-'));
    const secret = path.join(dir, 'secret.ts');
    writeFileSync(secret, Buffer.alloc(188 * 10, 0x47));
    const playlist = `#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nfile://${secret}\n#EXT-X-ENDLIST\n`;
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'application/vnd.apple.mpegurl' });
      res.end(playlist);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/p.m3u8`;
      const lines: string[] = [];
      const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (lines.push(chunk.toString()), done()) });
      const logger = winston.createLogger({ level: 'debug', transports: [new winston.transports.Stream({ stream: sink })] });
      let stdoutBytes = 0;
      const exit = await new Promise<{ code: number | null }>((resolve) => {
        new FfmpegProcess({
          ffmpegPath: process.env.FFMPEG_PATH ?? 'ffmpeg',
          args: confineInput(['-i', url, '-c', 'copy', '-f', 'mpegts', 'pipe:1'], { tlsVerify: true }),
          logger, onStdout: (c) => (stdoutBytes += c.length), onExit: resolve,
        }).start();
      });
      expect(exit.code).to.not.equal(0);
      expect(stdoutBytes).to.be.lessThan(188 * 10);
      expect(lines.join('\n')).to.match(/not on whitelist/);
    } finally {
      server.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
