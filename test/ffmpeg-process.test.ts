import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import winston from 'winston';
import { FfmpegProcess, parseFfmpegVersion, type FfmpegExit, type FfmpegProcessOptions } from '../src/ffmpeg/ffmpeg-process.js';
import {
  MAX_PENDING_LINE,
  StderrParser,
  classifyLine,
  type FfmpegProgress,
  type ParsedStderr,
} from '../src/ffmpeg/progress-parser.js';

const FFMPEG = 'ffmpeg';

// Captured from ffmpeg 5.1 runs with `-hide_banner -nostdin -loglevel error -stats`.
const REAL = {
  ok:
    'frame=    1 fps=0.0 q=0.0 size=       0kB time=00:00:00.00 bitrate=N/A speed=N/A    \r' +
    'frame=   25 fps=0.0 q=-1.0 Lsize=      43kB time=00:00:00.96 bitrate= 368.2kbits/s speed=  39x    \n',
  audioOnly:
    'size=       0kB time=00:00:00.00 bitrate=N/A speed=N/A    \r' +
    'size=       9kB time=00:00:01.02 bitrate=  72.9kbits/s speed=42.8x    \n',
  negative:
    'frame=    1 fps=0.0 q=-0.0 size=N/A time=-00:00:00.48 bitrate=N/A speed=N/A    \r' +
    'frame=    3 fps=0.0 q=-0.0 Lsize=N/A time=-00:00:00.40 bitrate=N/A speed=N/A    \n',
  refused:
    '[tcp @ 0x55a921da4f80] Connection to tcp://127.0.0.1:9 failed: Connection refused\n' +
    'http://127.0.0.1:9/nothing.ts: Connection refused\n',
  http404: 'http://127.0.0.1:18999/404.ts: Server returned 404 Not Found\n',
  http403: 'http://127.0.0.1:18999/403.ts: Server returned 403 Forbidden (access denied)\n',
  http5xx: 'http://127.0.0.1:18999/500.ts: Server returned 5XX Server Error reply\n',
  dns:
    '[tcp @ 0x55b0921a7f80] Failed to resolve hostname no-such-host.invalid: Name or service not known\n' +
    'http://no-such-host.invalid/x.ts: Input/output error\n',
  noFile: '/nonexistent.ts: No such file or directory\n',
  junk: '/tmp/junk.ts: Invalid data found when processing input\n',
  encoder: "Unknown encoder 'no_such_encoder'\n",
  badOption: "Unrecognized option 'foo'.\nError splitting the argument list: Option not found\n",
  brokenPipe:
    'frame=    1 fps=0.0 q=0.0 size=       0kB time=00:00:00.00 bitrate=N/A speed=N/A    \r' +
    'av_interleaved_write_frame(): Broken pipe\n' +
    '    Last message repeated 4 times\n' +
    'Error writing trailer of pipe:1: Broken pipe\n' +
    'frame=    6 fps=0.0 q=-1.0 Lsize=       6kB time=00:00:00.20 bitrate= 225.6kbits/s speed=13.2x    \n' +
    'Error closing file pipe:1: Broken pipe\n',
  // `-progress pipe:2`
  progressBlocks:
    'frame=1\nfps=0.00\nstream_0_0_q=0.0\nbitrate=N/A\ntotal_size=0\nout_time_us=0\nout_time_ms=0\n' +
    'out_time=00:00:00.000000\ndup_frames=0\ndrop_frames=0\nspeed=N/A\nprogress=continue\n' +
    'frame=13\nfps=0.00\nstream_0_0_q=-1.0\nbitrate= 413.6kbits/s\ntotal_size=24816\nout_time_us=480011\n' +
    'out_time_ms=480011\nout_time=00:00:00.480011\ndup_frames=0\ndrop_frames=0\nspeed=24.4x\nprogress=end\n',
};

function parseAll(text: string | Buffer, chunkSize = Infinity): ParsedStderr {
  const buf = Buffer.isBuffer(text) ? text : Buffer.from(text);
  const p = new StderrParser();
  const all: ParsedStderr = { progress: null, lines: [] };
  const take = (r: ParsedStderr): void => {
    all.lines.push(...r.lines);
    if (r.progress) all.progress = { ...all.progress, ...r.progress };
  };
  const step = Math.min(chunkSize, buf.length) || 1;
  for (let i = 0; i < buf.length; i += step) take(p.push(buf.subarray(i, i + step)));
  take(p.end());
  return all;
}

function classifyAll(text: string): Array<string | null> {
  return parseAll(text).lines.map(classifyLine);
}

interface LogRecord {
  level: string;
  message: string;
  [k: string]: unknown;
}

function captureLogger(): { logger: winston.Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) records.push(JSON.parse(l) as LogRecord);
      cb();
    },
  });
  const logger = winston.createLogger({
    level: 'debug',
    format: winston.format.json(),
    transports: [new winston.transports.Stream({ stream })],
  });
  return { logger, records };
}

const quietLogger = winston.createLogger({ level: 'debug', silent: true, transports: [new winston.transports.Console()] });

const pidsSeen: number[] = [];

interface RunResult {
  proc: FfmpegProcess;
  stdout: Buffer[];
  progress: FfmpegProgress[];
  exited: Promise<FfmpegExit>;
}

function launch(opts: Partial<FfmpegProcessOptions> & { args: string[] }): RunResult {
  const stdout: Buffer[] = [];
  const progress: FfmpegProgress[] = [];
  let resolveExit!: (e: FfmpegExit) => void;
  const exited = new Promise<FfmpegExit>((r) => (resolveExit = r));
  const proc = new FfmpegProcess({
    ffmpegPath: FFMPEG,
    logger: quietLogger,
    onStdout: (c) => stdout.push(c),
    onProgress: (p) => progress.push(p),
    ...opts,
    onExit: (e) => {
      opts.onExit?.(e);
      resolveExit(e);
    },
  });
  proc.start();
  if (proc.pid !== null) pidsSeen.push(proc.pid);
  return { proc, stdout, progress, exited };
}

function isGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('ffmpeg stderr parser', () => {
  it('parses the stats line, N/A values, Lsize and negative times', () => {
    const ok = parseAll(REAL.ok);
    expect(ok.lines).to.deep.equal([]);
    expect(ok.progress).to.deep.equal({
      frame: 25,
      fps: 0,
      sizeKb: 43,
      outTimeMs: 960,
      bitrateKbps: 368.2,
      speed: 39,
      duplicatedFrames: 0,
      droppedFrames: 0,
    });

    const first = new StderrParser().push(Buffer.from(REAL.ok.split('\r')[0] + '\r'));
    expect(first.progress).to.include({ frame: 1, bitrateKbps: null, speed: null, sizeKb: 0, outTimeMs: 0 });

    const neg = parseAll(REAL.negative).progress;
    expect(neg).to.include({ frame: 3, sizeKb: null, outTimeMs: -400, speed: null, bitrateKbps: null });

    const audio = parseAll(REAL.audioOnly).progress;
    expect(audio).to.deep.equal({ sizeKb: 9, outTimeMs: 1020, bitrateKbps: 72.9, speed: 42.8 });

    const full = parseAll(
      'frame=  123 fps= 25 q=28.0 size=    1024kB time=00:00:04.92 bitrate=1703.2kbits/s dup=2 drop=1 speed=1.01x\r',
    ).progress;
    expect(full).to.deep.equal({
      frame: 123,
      fps: 25,
      sizeKb: 1024,
      outTimeMs: 4920,
      bitrateKbps: 1703.2,
      speed: 1.01,
      duplicatedFrames: 2,
      droppedFrames: 1,
    });
    // ffmpeg ≥ 6.1 units and the elapsed field
    expect(
      parseAll('frame=   25 fps=0.0 q=-1.0 Lsize=      24KiB time=00:00:00.88 bitrate= 223.9kbits/s speed=14.9x elapsed=0:00:00.05\n')
        .progress,
    ).to.include({ sizeKb: 24, speed: 14.9 });
  });

  it('parses -progress pipe:2 key=value blocks (out_time_ms is microseconds)', () => {
    const r = parseAll(REAL.progressBlocks);
    expect(r.lines).to.deep.equal([]);
    expect(r.progress).to.deep.equal({
      frame: 13,
      fps: 0,
      bitrateKbps: 413.6,
      sizeKb: 24816 / 1024,
      outTimeMs: 480,
      duplicatedFrames: 0,
      droppedFrames: 0,
      speed: 24.4,
    });
    // A block is only reported once its `progress=` line is in.
    const p = new StderrParser();
    expect(p.push(Buffer.from('frame=12\nfps=25.00\nspeed=1.0x\n')).progress).to.equal(null);
    expect(p.push(Buffer.from('progress=continue\n')).progress).to.deep.equal({ frame: 12, fps: 25, speed: 1 });
  });

  it('gives the same result for byte-by-byte chunks as for one chunk', () => {
    const text = Object.values(REAL).join('') + 'Ünïcödé → ✓ error line\r\n';
    const whole = parseAll(text);
    const bytewise = parseAll(text, 1);
    expect(bytewise).to.deep.equal(whole);
    expect(whole.lines).to.include('Ünïcödé → ✓ error line');
    expect(whole.lines).to.include('Last message repeated 4 times');
    for (const size of [2, 3, 7, 64]) expect(parseAll(text, size)).to.deep.equal(whole);
  });

  it('caps a 1 MB line without a newline and keeps going', () => {
    const p = new StderrParser();
    const big = Buffer.alloc(1024 * 1024, 'x');
    expect(p.push(big).lines).to.deep.equal([]);
    expect(p.push(big).lines).to.deep.equal([]); // still bounded with a second MB
    const r = p.push(Buffer.from('\nUnknown encoder \'x\'\n' + REAL.ok));
    expect(r.lines).to.have.length(2);
    expect(r.lines[0]!.length).to.be.lessThan(MAX_PENDING_LINE + 64);
    expect(r.lines[0]).to.match(/^x+ \[truncated \d+ chars\]$/);
    expect(r.lines[1]).to.equal("Unknown encoder 'x'");
    expect(r.progress).to.include({ frame: 25 });
    // the same, fed in odd-sized pieces
    const q = new StderrParser();
    for (let i = 0; i < big.length; i += 4099) expect(q.push(big.subarray(i, i + 4099)).lines).to.deep.equal([]);
    expect(q.end().lines[0]!.length).to.be.lessThan(MAX_PENDING_LINE + 64);
  });

  it('flushes a last line without a terminator on end()', () => {
    const p = new StderrParser();
    expect(p.push(Buffer.from('Conversion failed!')).lines).to.deep.equal([]);
    expect(p.end().lines).to.deep.equal(['Conversion failed!']);
  });
});

describe('ffmpeg error line classification', () => {
  it('classifies real input failures as input', () => {
    for (const key of ['refused', 'http404', 'http403', 'http5xx', 'dns', 'noFile', 'junk'] as const) {
      const classes = classifyAll(REAL[key]);
      expect(classes, key).to.not.be.empty;
      expect(classes.at(-1), key).to.equal('input');
    }
  });

  it('classifies real output/option failures as output', () => {
    expect(classifyAll(REAL.encoder)).to.deep.equal(['output']);
    expect(classifyAll(REAL.badOption)).to.deep.equal(['output', 'output']);
    expect(classifyAll(REAL.brokenPipe)).to.deep.equal(['output', null, 'output', 'output']);
  });

  it('classifies literal samples', () => {
    const cases: Array<[string, string | null]> = [
      ['[https @ 0x1] HTTP error 403 Forbidden', 'input'],
      ['[tcp @ 0x1] Connection to tcp://10.0.0.1:80 failed: Connection timed out', 'input'],
      ['http://a/b.ts: End of file', 'input'],
      ['Error opening input file http://a/b.ts.', 'input'],
      ['Error opening input files: Invalid argument', 'input'],
      ['Error while opening encoder for output stream #0:0 - maybe incorrect parameters', 'output'],
      ['Could not write header for output file #0 (incorrect codec parameters ?): Invalid argument', 'output'],
      ['Error writing trailer of pipe:1: Input/output error', 'output'],
      ['pipe:1: Invalid argument', 'output'],
      ['Conversion failed!', 'output'],
      ['[h264 @ 0x1] error while decoding MB 3 4, bytestream -5', 'other'],
      ['Something failed', 'other'],
      ['Last message repeated 4 times', null],
      ['[mpegts @ 0x1] Packet corrupt (stream = 0, dts = 123).', null],
    ];
    for (const [line, cls] of cases) expect(classifyLine(line), line).to.equal(cls);
  });

  it('parses the ffmpeg -version first line', () => {
    expect(parseFfmpegVersion('ffmpeg version 5.1.6-0+deb12u1 Copyright (c) 2000-2024 the FFmpeg developers\nbuilt with gcc')).to.equal(
      '5.1.6-0+deb12u1',
    );
    expect(parseFfmpegVersion('ffmpeg version n7.0 Copyright')).to.equal('n7.0');
    expect(parseFfmpegVersion('')).to.equal(null);
    expect(parseFfmpegVersion('bash: ffmpeg: command not found')).to.equal(null);
    expect(parseFfmpegVersion(execFileSync(FFMPEG, ['-version']).toString())).to.match(/^\S*\d+\.\d+/);
  });
});

describe('ffmpeg process (real ffmpeg, lavfi)', function () {
  this.timeout(30_000);
  let tmp: string;

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'ffmpeg-process-test-'));
  });

  after(() => {
    rmSync(tmp, { recursive: true, force: true });
    for (const pid of pidsSeen) expect(isGone(pid), `pid ${pid} still alive`).to.equal(true);
    // Only our own children: other suites or sessions on this machine may run ffmpeg too.
    let left = '';
    try {
      left = execFileSync('pgrep', ['-x', '-P', String(process.pid), 'ffmpeg']).toString().trim();
    } catch (err) {
      if ((err as { status?: number }).status !== 1) throw err; // 1: nothing matched
    }
    expect(left, 'ffmpeg children left behind').to.equal('');
  });

  it('streams MPEG-TS to stdout with progress at real-time speed and exits 0', async () => {
    const run = launch({
      args: [
        '-re', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=25',
        '-f', 'lavfi', '-i', 'sine',
        '-t', '3', '-c:v', 'libx264', '-preset', 'ultrafast', '-c:a', 'aac', '-f', 'mpegts', 'pipe:1',
      ],
    });
    expect(run.proc.running).to.equal(true);
    const exit = await run.exited;
    const out = Buffer.concat(run.stdout);
    expect(exit).to.deep.equal({ code: 0, signal: null, errorClass: null, lastError: null, stoppedByUs: false });
    expect(out.length).to.be.greaterThan(0);
    expect(out[0]).to.equal(0x47);
    expect(out.length % 188).to.equal(0);
    const good = run.progress.filter((p) => (p.frame ?? 0) > 0 && p.speed !== null && p.speed >= 0.5 && p.speed <= 1.5);
    expect(good, JSON.stringify(run.progress)).to.not.be.empty;
    expect(run.proc.progress.frame).to.be.greaterThan(60);
    expect(run.proc.progress.outTimeMs).to.be.within(2500, 3500);
    expect(run.proc.running).to.equal(false);
    expect(run.proc.pid).to.equal(null);
  });

  it('stop() ends an endless run within 5 s and leaves no process', async () => {
    const run = launch({
      args: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=25', '-c:v', 'libx264', '-preset', 'ultrafast', '-f', 'mpegts', 'pipe:1'],
    });
    const pid = run.proc.pid;
    expect(pid).to.be.a('number');
    while (run.stdout.length === 0) await sleep(50);
    const t0 = Date.now();
    const stopping = run.proc.stop();
    expect(run.proc.stop()).to.equal(stopping); // idempotent
    const exit = await stopping;
    expect(Date.now() - t0).to.be.lessThan(5000);
    expect(exit.stoppedByUs).to.equal(true);
    expect(await run.exited).to.equal(exit);
    expect(await run.proc.stop()).to.equal(exit); // after exit too
    expect(isGone(pid!)).to.equal(true);
  });

  it('SIGKILLs a child that ignores SIGTERM after killAfterMs', async () => {
    const script = join(tmp, 'ignore-term.mjs');
    writeFileSync(
      script,
      '#!/usr/bin/env node\n' +
        "process.on('SIGTERM', () => {});\nsetInterval(() => {}, 1000);\nprocess.stdout.write('ready\\n');\n",
    );
    chmodSync(script, 0o755);
    const run = launch({ ffmpegPath: script, args: [], killAfterMs: 300 });
    const pid = run.proc.pid;
    while (run.stdout.length === 0) await sleep(20); // its SIGTERM handler is in place
    const t0 = Date.now();
    const exit = await run.proc.stop();
    expect(Date.now() - t0).to.be.within(250, 3000);
    expect(exit.signal).to.equal('SIGKILL');
    expect(exit.code).to.equal(null);
    expect(exit.stoppedByUs).to.equal(true);
    expect(isGone(pid!)).to.equal(true);
  });

  it('classifies a refused input connection as input', async () => {
    const run = launch({ args: ['-i', 'http://127.0.0.1:9/nothing.ts', '-f', 'mpegts', 'pipe:1'] });
    const exit = await run.exited;
    expect(exit.code).to.not.equal(0);
    expect(exit.code).to.not.equal(null);
    expect(exit.errorClass).to.equal('input');
    expect(exit.lastError).to.match(/Connection refused/);
    expect(exit.stoppedByUs).to.equal(false);
  });

  it('classifies an unknown encoder as output', async () => {
    const run = launch({ args: ['-f', 'lavfi', '-i', 'testsrc2', '-t', '1', '-c:v', 'no_such_encoder', '-f', 'mpegts', 'pipe:1'] });
    const exit = await run.exited;
    expect(exit.code).to.not.equal(0);
    expect(exit.errorClass).to.equal('output');
    expect(exit.lastError).to.match(/no_such_encoder/);
  });

  it('reports a missing binary through onExit without throwing', async () => {
    let run: RunResult | undefined;
    expect(() => (run = launch({ ffmpegPath: '/nonexistent/ffmpeg', args: ['-version'] }))).to.not.throw();
    const exit = await run!.exited;
    expect(exit.code).to.equal(null);
    expect(exit.signal).to.equal(null);
    expect(exit.errorClass).to.equal('other');
    expect(exit.lastError).to.match(/ENOENT/);
    expect(exit.lastError).to.contain('/nonexistent/ffmpeg');
    expect(run!.proc.running).to.equal(false);
    expect(await run!.proc.stop()).to.equal(exit);
  });

  it('survives a throwing stdout consumer', async () => {
    let calls = 0;
    const run = launch({
      // -re: output over ~1 s of real time, so it arrives in several reads even when a loaded
      // box lets FFmpeg finish before Node reads (1 s of 160x120 fits in one 64 KiB read).
      args: ['-re', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=25', '-t', '1', '-c:v', 'libx264', '-preset', 'ultrafast', '-flush_packets', '1', '-f', 'mpegts', 'pipe:1'],
      onStdout: () => {
        calls++;
        throw new Error('consumer bug');
      },
    });
    const exit = await run.exited;
    expect(calls).to.be.greaterThan(1);
    expect(exit.code).to.equal(0);
  });

  it('rate-limits logged stderr lines and summarises the rest, with logMeta', async () => {
    const script = join(tmp, 'chatty.mjs');
    writeFileSync(
      script,
      '#!/usr/bin/env node\n' +
        "for (let i = 0; i < 50; i++) process.stderr.write(`line ${i} http://user:secret@host/x.ts error\\n`);\n" +
        'process.exitCode = 3;\n',
    );
    chmodSync(script, 0o755);
    const { logger, records } = captureLogger();
    const run = launch({ ffmpegPath: script, args: [], logger, logMeta: { stream_id: 's1' } });
    const exit = await run.exited;
    await sleep(50); // let the stream transport flush
    expect(exit.code).to.equal(3);
    expect(exit.errorClass).to.equal('other');
    expect(exit.lastError).to.equal('line 49 http://***@host/x.ts error');
    const ffLines = records.filter((r) => r.source === 'ffmpeg');
    expect(ffLines).to.have.length(20);
    expect(records.some((r) => r.message === '30 ffmpeg lines suppressed')).to.equal(true);
    expect(records.every((r) => r.stream_id === 's1')).to.equal(true);
    expect(JSON.stringify(records)).to.not.contain('secret');
  });

  it('stop() before start() never starts', async () => {
    const exits: FfmpegExit[] = [];
    const proc = new FfmpegProcess({
      ffmpegPath: FFMPEG,
      args: ['-f', 'lavfi', '-i', 'testsrc2', '-f', 'null', '-'],
      logger: quietLogger,
      onStdout: () => {},
      onExit: (e) => exits.push(e),
    });
    const exit = await proc.stop();
    proc.start();
    expect(proc.pid).to.equal(null);
    expect(exit.stoppedByUs).to.equal(true);
    expect(exits).to.have.length(1);
  });
});
