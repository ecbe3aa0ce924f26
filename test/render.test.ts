import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { threadId } from 'node:worker_threads';
import { AppError } from '../src/errors.js';
import { CPU_VARIABLES, detectHwAccel, ffmpegArgsFor, type HwVariables } from '../src/ffmpeg/hw-accel.js';
import { loadProfiles } from '../src/render/profiles.js';
import { RenderPool } from '../src/render/render-pool.js';
import renderTask, { renderWith, type RenderRequest } from '../src/render/render-task.js';
import { placeholders, quoteArg, substitute, tokenize, validateArgv } from '../src/render/template.js';

// dist/test/render.test.js → repository root
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const PROFILES_DIR = path.join(ROOT, 'profiles');
const BUILT_INS = ['default', 'hq', 'lowlatency', '720p', '1080p', 'hevc', 'audio'];
const FFMPEG = process.env.FFMPEG_PATH ?? 'ffmpeg';
const URL_IN = 'http://127.0.0.1:9/x.ts';
const HLS_DIR = '/tmp/m3u-proxy-hls/stream1';

function appErrorOf(fn: () => unknown): AppError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(AppError);
    return err as AppError;
  }
  expect.fail('expected an AppError');
}

async function rejectionOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  expect.fail('expected a rejection');
}

const invalidCode = (fn: () => unknown): string => appErrorOf(fn).code;

function request(over: Partial<RenderRequest>): RenderRequest {
  return {
    profilesDir: PROFILES_DIR,
    profile: null,
    template: null,
    variables: {},
    inputUrl: URL_IN,
    hlsDir: HLS_DIR,
    hw: CPU_VARIABLES,
    ...over,
  };
}

function ffmpeg(args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile(FFMPEG, args, { encoding: 'buffer', maxBuffer: 50 * 1024 * 1024, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number(err.code) : 1) : 0;
      resolve({ code, stdout, stderr: stderr.toString() });
    });
  });
}

describe('render template', () => {
  describe('substitute', () => {
    it('fills variables and falls back to inline defaults', () => {
      expect(substitute('-crf {crf|23} -b:a {ab}', { ab: '128k' })).to.equal('-crf 23 -b:a 128k');
      expect(substitute('-crf {crf|23}', { crf: '18' })).to.equal('-crf 18');
      // An empty value is a value ({HW} on cpu), not a reason to use the default.
      expect(substitute('{HW|-hwaccel cuda} -i x', { HW: '' })).to.equal(' -i x');
      expect(substitute('{a|}b', {})).to.equal('b');
    });

    it('a variable without value or default is TEMPLATE_INVALID naming it', () => {
      const err = appErrorOf(() => substitute('-b:v {bitrate}', {}));
      expect(err.code).to.equal('TEMPLATE_INVALID');
      expect(err.status).to.equal(400);
      expect(err.message).to.equal('Template variable {bitrate} has no value and no default');
      // Prototype names are not values.
      expect(invalidCode(() => substitute('{constructor}', {}))).to.equal('TEMPLATE_INVALID');
    });

    it('{{ and }} are literal braces; stray braces are errors', () => {
      expect(substitute('text=%{{pts}} {x}', { x: '1' })).to.equal('text=%{pts} 1');
      expect(invalidCode(() => substitute('a { b', {}))).to.equal('TEMPLATE_INVALID');
      expect(invalidCode(() => substitute('a } b', {}))).to.equal('TEMPLATE_INVALID');
      expect(invalidCode(() => substitute('{1abc}', {}))).to.equal('TEMPLATE_INVALID');
    });

    it('does not re-scan substituted values', () => {
      expect(substitute('{a}', { a: '{b}' })).to.equal('{b}');
    });

    it('lists placeholders', () => {
      expect(placeholders('{a} {b|2} {{c}}')).to.deep.equal([
        { name: 'a', default: undefined },
        { name: 'b', default: '2' },
      ]);
    });
  });

  describe('tokenize', () => {
    it('splits on whitespace and consumes quotes', () => {
      expect(tokenize('  -c:v  libx264\n-crf\t23 ')).to.deep.equal(['-c:v', 'libx264', '-crf', '23']);
      expect(tokenize('-vf "scale=1280:720,fps=30"')).to.deep.equal(['-vf', 'scale=1280:720,fps=30']);
      expect(tokenize("-metadata 'title=a b'")).to.deep.equal(['-metadata', 'title=a b']);
      expect(tokenize(`-metadata "title=it's"`)).to.deep.equal(['-metadata', "title=it's"]);
      expect(tokenize(`a"b c"d 'e'"f"`)).to.deep.equal(['ab cd', 'ef']);
      expect(tokenize(`a\\ b \\"c`)).to.deep.equal(['a b', '"c']);
      expect(tokenize(`"a \\"q\\" \\\\ \\: b"`)).to.deep.equal(['a "q" \\ \\: b']);
      expect(tokenize(`x "" y`)).to.deep.equal(['x', '', 'y']);
      expect(tokenize('a \\\nb')).to.deep.equal(['a', 'b']);
    });

    it('keeps the inner single quotes of a filter argument for ffmpeg, consuming the outer ones', () => {
      const argv = tokenize(`-vf "scale=1280:720,drawtext=text='Hello World'" -c:a aac`);
      // Inside "..." single quotes are literal (as in a shell): ffmpeg's filter parser needs
      // them, e.g. for text containing commas.
      expect(argv).to.deep.equal(['-vf', "scale=1280:720,drawtext=text='Hello World'", '-c:a', 'aac']);
      for (const t of argv) expect(t).to.not.match(/^"|"$/);
    });

    it('unbalanced quotes or a trailing backslash are TEMPLATE_INVALID', () => {
      expect(invalidCode(() => tokenize('-vf "scale=1:1 -f mpegts pipe:1'))).to.equal('TEMPLATE_INVALID');
      expect(invalidCode(() => tokenize("-metadata 'title=x"))).to.equal('TEMPLATE_INVALID');
      expect(invalidCode(() => tokenize('-a b\\'))).to.equal('TEMPLATE_INVALID');
    });

    it('quoteArg round-trips through tokenize', () => {
      for (const s of ['plain', 'a b', "it's", 'x"y', '', 'a\\b', '/dev/dri/renderD128']) {
        expect(tokenize(quoteArg(s))).to.deep.equal([s]);
      }
    });
  });

  describe('validateArgv', () => {
    const opts = { inputUrl: URL_IN, hlsDir: HLS_DIR };
    const ts = (...mid: string[]): string[] => ['-i', URL_IN, ...mid, '-f', 'mpegts', 'pipe:1'];
    const detail = (argv: string[]): string => appErrorOf(() => validateArgv(argv, opts)).message;

    it('accepts MPEG-TS to pipe:1', () => {
      expect(validateArgv(ts('-c', 'copy'), opts)).to.deep.equal({ outputFormat: 'mpegts', output: 'pipe:1' });
      expect(validateArgv(['-hwaccel', 'cuda', '-re', ...ts('-vn', '-c:a', 'aac')], opts).output).to.equal('pipe:1');
    });

    it('rejects an output other than pipe:1 or a missing -f mpegts', () => {
      expect(detail(['-i', URL_IN, '-c', 'copy', '-f', 'mpegts', '/tmp/out.ts'])).to.match(/pipe:1/);
      expect(detail(['-i', URL_IN, '-c', 'copy', 'pipe:1'])).to.match(/-f mpegts/);
      expect(detail(['-i', URL_IN, '-f', 'matroska', 'pipe:1'])).to.match(/-f mpegts/);
      expect(detail(['-i', URL_IN, '-f', 'mpegts', 'pipe:1', '-c', 'copy'])).to.match(/last argument|output/);
    });

    it('rejects a second output hidden among the options', () => {
      expect(detail(ts('-crf', '23', '/tmp/evil.ts', '-maxrate', '4M'))).to.match(/only one output.*evil/);
      expect(detail(ts('-vn', '/tmp/evil.ts'))).to.match(/only one output/);
    });

    it('rejects a second input, a wrong input and local inputs', () => {
      expect(detail(ts('-i', '/etc/passwd'))).to.match(/only one input/);
      expect(detail(['-i', '/etc/passwd', '-f', 'mpegts', 'pipe:1'])).to.match(/stream URL/);
      expect(detail(['-c', 'copy', '-f', 'mpegts', 'pipe:1'])).to.match(/no input/);
      const local = { inputUrl: '/etc/passwd', hlsDir: HLS_DIR };
      expect(appErrorOf(() => validateArgv(['-i', '/etc/passwd', '-f', 'mpegts', 'pipe:1'], local)).message).to.match(/network URL/);
      const concat = { inputUrl: 'concat:/etc/passwd', hlsDir: HLS_DIR };
      expect(invalidCode(() => validateArgv(['-i', 'concat:/etc/passwd', '-f', 'mpegts', 'pipe:1'], concat))).to.equal('TEMPLATE_INVALID');
      expect(validateArgv(['-i', 'pipe:0', '-f', 'mpegts', 'pipe:1'], { inputUrl: 'pipe:0', hlsDir: HLS_DIR }).output).to.equal('pipe:1');
      const query = { inputUrl: 'http://h/play.php?movie=12&file:x', hlsDir: HLS_DIR };
      expect(validateArgv(['-i', query.inputUrl, '-f', 'mpegts', 'pipe:1'], query).output).to.equal('pipe:1');
    });

    it('rejects movie=, amovie=, file: and -f lavfi', () => {
      expect(detail(ts('-vf', 'movie=/etc/passwd[x];[in][x]overlay'))).to.match(/movie/);
      expect(detail(ts('-af', "amovie='/etc/x.wav'"))).to.match(/movie/);
      expect(detail(ts('-filter_complex', "mo'vie'@a=/etc/passwd"))).to.match(/movie/);
      expect(detail(ts('-metadata', 'title=x', '-hls_base_url', 'file:/etc/'))).to.match(/local file/);
      expect(detail(['-f', 'lavfi', '-i', URL_IN, '-f', 'mpegts', 'pipe:1'])).to.match(/lavfi/);
      expect(detail(['-f', 'concat', '-i', URL_IN, '-f', 'mpegts', 'pipe:1'])).to.match(/concat/);
    });

    it('rejects options and filters that open local files', () => {
      expect(detail(ts('-filter_complex_script', '/etc/passwd'))).to.match(/not allowed/);
      expect(detail(ts('-attach', '/etc/passwd'))).to.match(/not allowed/);
      expect(detail(ts('-vf', 'drawtext=textfile=/etc/passwd'))).to.match(/text file/);
      expect(detail(ts('-vf', "scale=1:1,subtitles='/etc/x.srt'"))).to.match(/subtitles/);
      expect(detail(ts('-vf', '[in]sendcmd=f=/tmp/c.txt,null'))).to.match(/sendcmd/);
    });

    it('HLS output inside hlsDir is accepted; outside or escaping is rejected', () => {
      const hls = (out: string, ...extra: string[]): string[] => ['-i', URL_IN, '-f', 'hls', '-hls_time', '4', ...extra, out];
      expect(validateArgv(hls(`${HLS_DIR}/index.m3u8`), opts)).to.deep.equal({ outputFormat: 'hls', output: `${HLS_DIR}/index.m3u8` });
      expect(validateArgv(hls(`${HLS_DIR}/sub/../index.m3u8`), opts).outputFormat).to.equal('hls');
      expect(detail(hls('/tmp/elsewhere/index.m3u8'))).to.match(/inside the HLS directory/);
      expect(detail(hls(`${HLS_DIR}/../other/index.m3u8`))).to.match(/inside the HLS directory/);
      expect(detail(hls(`${HLS_DIR}-evil/index.m3u8`))).to.match(/inside the HLS directory/);
      expect(detail(hls('index.m3u8'))).to.match(/inside the HLS directory/);
      expect(detail(hls('pipe:1'))).to.match(/inside the HLS directory/);
      // A .m3u8 output is HLS even without -f hls.
      expect(detail(['-i', URL_IN, '-f', 'mpegts', '/tmp/x.m3u8'])).to.match(/HLS/);
      expect(detail(hls(`${HLS_DIR}/index.m3u8`, '-hls_segment_filename', '/tmp/seg_%03d.ts'))).to.match(/segment_filename/);
      expect(validateArgv(hls(`${HLS_DIR}/index.m3u8`, '-hls_segment_filename', `${HLS_DIR}/s_%03d.ts`), opts).output).to.equal(`${HLS_DIR}/index.m3u8`);
    });
  });
});

describe('render profiles', () => {
  it('every built-in profile loads without problems', async () => {
    const { profiles, problems } = await loadProfiles(PROFILES_DIR);
    expect(problems).to.deep.equal([]);
    expect(profiles.map((p) => p.name)).to.include.members(BUILT_INS);
    for (const p of profiles) {
      expect(p.outputFormat).to.equal('mpegts');
      expect(p.description).to.be.a('string').and.not.empty;
      expect(path.isAbsolute(p.file)).to.equal(true);
      // Inline {x|default}s agree with the variables map, so listing and rendering agree.
      for (const ph of placeholders(p.template)) {
        if (ph.default !== undefined) expect(p.variables[ph.name], `${p.name}: ${ph.name}`).to.equal(ph.default);
      }
      // A hardware decode surface must never meet a software filter.
      expect(p.template).to.not.include('hwaccel_output_format');
    }
  });

  for (const hw of ['cpu', 'nvenc', 'vaapi', 'qsv'] as const) {
    it(`every built-in profile renders for ${hw} to an argv ending in pipe:1`, async () => {
      const vars: HwVariables = hw === 'cpu' ? CPU_VARIABLES : await fakeHw(hw);
      const { profiles, problems } = await loadProfiles(PROFILES_DIR);
      for (const name of BUILT_INS) {
        const r = renderWith({ profiles, problems }, request({ profile: name, hw: vars }));
        expect(r.argv.at(-1), name).to.equal('pipe:1');
        expect(r.argv.slice(-3), name).to.deep.equal(['-f', 'mpegts', 'pipe:1']);
        expect(r.argv[r.argv.indexOf('-i') + 1], name).to.equal(URL_IN);
        expect(r.argv.join(' '), name).to.not.match(/[{}]/);
        expect(r.outputFormat).to.equal('mpegts');
        expect(r.profile).to.equal(name);
        expect(r.argv).to.not.include('');
        if (hw === 'vaapi' && name !== 'audio') {
          // The upload comes after the software filters.
          const vf = r.argv[r.argv.indexOf('-vf') + 1]!;
          expect(vf, name).to.match(/format=nv12,hwupload$/);
        }
      }
    });
  }

  it('broken files are skipped with a problem, not a crash', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'profiles-'));
    try {
      writeFileSync(path.join(dir, 'good.yaml'), 'name: good\ndescription: ok\ntemplate: "-i {input_url} {output_args}"\nvariables:\n  crf: 23\n');
      writeFileSync(path.join(dir, 'json.json'), JSON.stringify({ name: 'json', template: '-i {input_url} {output_args}' }));
      writeFileSync(path.join(dir, 'bad-yaml.yaml'), 'name: [unclosed\n');
      writeFileSync(path.join(dir, 'bad-name.yml'), 'name: Bad Name\ntemplate: "-i {input_url} {output_args}"\n');
      writeFileSync(path.join(dir, 'no-input.yaml'), 'name: noinput\ntemplate: "-c copy {output_args}"\n');
      writeFileSync(path.join(dir, 'bad-vars.yaml'), 'name: badvars\ntemplate: "-i {input_url} {output_args}"\nvariables: [1, 2]\n');
      writeFileSync(path.join(dir, 'bad-brace.yaml'), 'name: badbrace\ntemplate: "-i {input_url} { {output_args}"\n');
      writeFileSync(path.join(dir, 'z-dup.yaml'), 'name: good\ntemplate: "-i {input_url} {output_args}"\n');
      writeFileSync(path.join(dir, 'notes.txt'), 'ignored');
      mkdirSync(path.join(dir, 'sub.yaml'));
      const { profiles, problems } = await loadProfiles(dir);
      expect(profiles.map((p) => p.name)).to.deep.equal(['good', 'json']);
      expect(profiles[0]!.variables).to.deep.equal({ crf: '23' });
      expect(profiles[1]!.outputFormat).to.equal('mpegts');
      expect(problems).to.have.length(6);
      for (const f of ['bad-yaml.yaml', 'bad-name.yml', 'no-input.yaml', 'bad-vars.yaml', 'bad-brace.yaml', 'z-dup.yaml']) {
        expect(problems.some((p) => p.includes(f)), f).to.equal(true);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a missing directory is a problem, not a crash', async () => {
    const { profiles, problems } = await loadProfiles('/nonexistent/profiles');
    expect(profiles).to.deep.equal([]);
    expect(problems[0]).to.match(/cannot be read/);
  });
});

// A temp dir with fake device nodes, so detection (without its test encode) builds the
// variables it would use on a host with that hardware.
let fakeDevDir: string | null = null;
function fakeDevices(): string {
  if (!fakeDevDir) {
    fakeDevDir = mkdtempSync(path.join(os.tmpdir(), 'fake-dev-'));
    writeFileSync(path.join(fakeDevDir, 'nvidia0'), '');
    mkdirSync(path.join(fakeDevDir, 'dri'));
    writeFileSync(path.join(fakeDevDir, 'dri', 'renderD128'), '');
  }
  return fakeDevDir;
}
after(() => {
  if (fakeDevDir) rmSync(fakeDevDir, { recursive: true, force: true });
});
async function fakeHw(type: 'nvenc' | 'vaapi' | 'qsv'): Promise<HwVariables> {
  const hw = await detectHwAccel({ ffmpegPath: FFMPEG, mode: type, devDir: fakeDevices(), probe: false });
  expect(hw.type, hw.fallbackReason).to.equal(type);
  return hw;
}

describe('render task', function () {
  this.timeout(60_000);

  it('merges variables: request wins over profile defaults, detection over defaults', async () => {
    const out = await renderTask(request({ profile: 'default', variables: { crf: '30', extra: 'x' } }));
    if ('error' in out) expect.fail(out.error.detail);
    expect(out.variables).to.include({ crf: '30', maxrate: '4M', extra: 'x' });
    expect(out.variables).to.not.have.property('input_url');
    expect(out.argv.join(' ')).to.include('-crf 30').and.include('-c:v libx264 -preset veryfast');
    expect(out.threadId).to.equal(threadId);
  });

  it('the proxy variables cannot be set by a request', async () => {
    for (const v of ['input_url', 'output_args', 'hls_dir']) {
      const out = await renderTask(request({ profile: 'default', variables: { [v]: 'http://evil/' } }));
      expect(out).to.have.property('error');
      if ('error' in out) {
        expect(out.error.code).to.equal('TEMPLATE_INVALID');
        expect(out.error.detail).to.include('filled in by the proxy');
      }
    }
  });

  it('an input URL with spaces and quotes stays one argument', async () => {
    const inputUrl = `http://h/a b'c".ts`;
    const out = await renderTask(request({ template: '-i {input_url} -c copy {output_args}', inputUrl }));
    if ('error' in out) expect.fail(out.error.detail);
    expect(out.argv).to.deep.equal(['-i', inputUrl, '-c', 'copy', '-f', 'mpegts', 'pipe:1']);
  });

  it('{input_url} must appear exactly once', async () => {
    const out = await renderTask(request({ template: '-i {input_url} -metadata url={input_url} {output_args}' }));
    expect(out).to.have.nested.property('error.code', 'TEMPLATE_INVALID');
  });

  it('an hls profile gets HLS output_args inside hlsDir', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'profiles-'));
    try {
      writeFileSync(path.join(dir, 'h.yaml'), 'name: h\noutput_format: hls\ntemplate: "-i {input_url} -c copy {output_args}"\n');
      const hlsDir = '/tmp/hls dir/s1';
      const out = await renderTask(request({ profilesDir: dir, profile: 'h', hlsDir }));
      if ('error' in out) expect.fail(out.error.detail);
      expect(out.outputFormat).to.equal('hls');
      expect(out.output).to.equal(`${hlsDir}/index.m3u8`);
      expect(out.argv).to.include(`${hlsDir}/seg_%05d.ts`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a raw template must start with "-"; profile and template are exclusive', async () => {
    expect(await renderTask(request({ template: 'i {input_url} {output_args}' }))).to.have.nested.property('error.code', 'TEMPLATE_INVALID');
    expect(await renderTask(request({ template: '-i {input_url} {output_args}', profile: 'default' }))).to.have.nested.property(
      'error.code',
      'TEMPLATE_INVALID',
    );
    expect(await renderTask(request({}))).to.have.nested.property('error.code', 'TEMPLATE_INVALID');
    // A "profile" that is really a template is rendered as one.
    const out = await renderTask(request({ profile: '-i {input_url} -c copy {output_args}' }));
    expect(out).to.have.property('argv');
  });

  it('the rendered default and audio profiles really run in ffmpeg', async function () {
    this.timeout(60_000);
    for (const name of ['default', 'audio']) {
      const out = await renderTask(request({ profile: name }));
      if ('error' in out) expect.fail(out.error.detail);
      // Drop the input options and `-i <url>`; feed 2 s of test video and audio instead.
      const rest = out.argv.slice(out.argv.indexOf('-i') + 2);
      const args = [
        '-hide_banner', '-loglevel', 'error', '-nostdin',
        '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=10:duration=2',
        '-f', 'lavfi', '-i', 'sine=duration=2',
        ...rest,
      ];
      const res = await ffmpeg(args);
      expect(res.code, `${name}: ${res.stderr}`).to.equal(0);
      expect(res.stdout.length, name).to.be.greaterThan(188 * 10);
      expect(res.stdout[0], name).to.equal(0x47);
      expect(res.stdout[188], name).to.equal(0x47);
    }
  });

  it('the 720p, hevc and lowlatency profiles run in ffmpeg too', async function () {
    this.timeout(60_000);
    for (const name of ['720p', 'hevc', 'lowlatency']) {
      const out = await renderTask(request({ profile: name }));
      if ('error' in out) expect.fail(out.error.detail);
      const rest = out.argv.slice(out.argv.indexOf('-i') + 2);
      const res = await ffmpeg([
        '-hide_banner', '-loglevel', 'error', '-nostdin',
        '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=10:duration=1',
        '-f', 'lavfi', '-i', 'sine=duration=1',
        ...rest,
      ]);
      expect(res.code, `${name}: ${res.stderr}`).to.equal(0);
      expect(res.stdout[0], name).to.equal(0x47);
    }
  });
});

describe('render pool', function () {
  this.timeout(60_000);
  let pool: RenderPool;

  before(() => {
    pool = new RenderPool({ profilesDir: PROFILES_DIR, threads: 2, hw: CPU_VARIABLES });
  });
  after(async () => {
    await pool.close();
  });

  it('renders in worker threads, not the main thread', async () => {
    expect(threadId).to.equal(0);
    const r = await pool.render({ profile: 'default', inputUrl: URL_IN, hlsDir: HLS_DIR });
    expect(r.threadId).to.not.equal(0);
    expect(r.argv.at(-1)).to.equal('pipe:1');
    expect(r.profile).to.equal('default');
  });

  it('renders many requests concurrently', async () => {
    const names = Array.from({ length: 40 }, (_, i) => BUILT_INS[i % BUILT_INS.length]!);
    const results = await Promise.all(
      names.map((profile, i) => pool.render({ profile, variables: { tag: String(i) }, inputUrl: `${URL_IN}?n=${i}`, hlsDir: HLS_DIR })),
    );
    results.forEach((r, i) => {
      expect(r.profile).to.equal(names[i]);
      expect(r.argv).to.include(`${URL_IN}?n=${i}`);
      expect(r.threadId).to.not.equal(0);
    });
    // Both threads take work once they are up (they boot in the background).
    const seen = new Set(results.map((r) => r.threadId));
    for (let i = 0; i < 50 && seen.size < 2; i++) {
      await new Promise((r) => setTimeout(r, 20));
      const burst = await Promise.all(Array.from({ length: 20 }, () => pool.render({ profile: 'audio', inputUrl: URL_IN, hlsDir: HLS_DIR })));
      for (const r of burst) seen.add(r.threadId);
    }
    expect(seen.size).to.equal(2);
    const s = pool.stats();
    expect(s.threads).to.equal(2);
    expect(s.completed).to.be.at.least(41);
    expect(s.queued).to.equal(0);
    expect(s.utilization).to.be.a('number');
  });

  it('an unknown profile is an AppError PROFILE_NOT_FOUND listing the names', async () => {
    const err = await rejectionOf(pool.render({ profile: 'no-such', inputUrl: URL_IN, hlsDir: HLS_DIR }));
    expect(err).to.be.instanceOf(AppError);
    const e = err as AppError;
    expect(e.status).to.equal(400);
    expect(e.code).to.equal('PROFILE_NOT_FOUND');
    for (const n of BUILT_INS) expect(e.message).to.include(n);
  });

  it('a bad template is an AppError TEMPLATE_INVALID', async () => {
    const err = await rejectionOf(pool.render({ template: '-i {input_url} -i /etc/passwd {output_args}', inputUrl: URL_IN, hlsDir: HLS_DIR }));
    expect(err).to.be.instanceOf(AppError);
    expect((err as AppError).code).to.equal('TEMPLATE_INVALID');
  });

  it('a raw template starting with "-" renders', async () => {
    const r = await pool.render({
      template: `-i {input_url} -vf "scale=160:120,drawtext=text='Hi, there'" -c:a copy {output_args}`,
      inputUrl: URL_IN,
      hlsDir: HLS_DIR,
    });
    expect(r.profile).to.equal(null);
    expect(r.argv).to.deep.equal(['-i', URL_IN, '-vf', "scale=160:120,drawtext=text='Hi, there'", '-c:a', 'copy', '-f', 'mpegts', 'pipe:1']);
    expect(r.threadId).to.not.equal(0);
  });

  it('lists profiles from the main thread', async () => {
    const names = (await pool.profiles()).map((p) => p.name);
    expect(names).to.include.members(BUILT_INS);
    expect(await pool.profileProblems()).to.deep.equal([]);
  });
});

describe('render hardware detection', function () {
  this.timeout(60_000);
  let devDir: string;

  before(() => {
    devDir = fakeDevices();
  });

  it('mode cpu gives the cpu variables without asking ffmpeg', async () => {
    const hw = await detectHwAccel({ ffmpegPath: '/nonexistent/ffmpeg', mode: 'cpu' });
    expect(hw).to.deep.equal({
      type: 'cpu',
      device: null,
      HW: '',
      ENC264: 'libx264',
      ENC265: 'libx265',
      PRESET: 'veryfast',
      PRESET_ARGS: '-preset veryfast',
      HWUPLOAD: '',
      LOWLATENCY_ARGS: '-tune zerolatency',
    });
    expect(ffmpegArgsFor(hw)).to.deep.equal([]);
  });

  it('an unavailable explicit mode falls back to cpu with a reason', async () => {
    const empty = mkdtempSync(path.join(os.tmpdir(), 'empty-dev-'));
    try {
      const hw = await detectHwAccel({ ffmpegPath: FFMPEG, mode: 'nvenc', devDir: empty });
      expect(hw.type).to.equal('cpu');
      expect(hw.ENC264).to.equal('libx264');
      expect(hw.fallbackReason).to.match(/nvenc/).and.match(/nvidia0|h264_nvenc/);
      // auto finding nothing is plain cpu, not a fallback.
      const auto = await detectHwAccel({ ffmpegPath: FFMPEG, mode: 'auto', devDir: empty });
      expect(auto.type).to.equal('cpu');
      expect(auto.fallbackReason).to.equal(undefined);
      // A broken ffmpeg is a fallback too.
      const broken = await detectHwAccel({ ffmpegPath: '/nonexistent/ffmpeg', mode: 'vaapi', devDir });
      expect(broken.type).to.equal('cpu');
      expect(broken.fallbackReason).to.match(/-encoders failed/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  it('auto with a (fake) NVIDIA device picks nvenc when ffmpeg lists h264_nvenc', async function () {
    const listed = await ffmpeg(['-hide_banner', '-encoders']);
    if (!listed.stdout.toString().includes('h264_nvenc')) this.skip();
    const hw = await detectHwAccel({ ffmpegPath: FFMPEG, mode: 'auto', devDir, probe: false });
    expect(hw).to.deep.include({
      type: 'nvenc',
      device: path.join(devDir, 'nvidia0'),
      HW: '-hwaccel cuda',
      ENC264: 'h264_nvenc',
      ENC265: 'hevc_nvenc',
      PRESET: 'p4',
      PRESET_ARGS: '-preset p4',
      HWUPLOAD: '',
    });
    expect(ffmpegArgsFor(hw)).to.deep.equal(['-hwaccel', 'cuda']);
  });

  it('vaapi and qsv upload at the end of the filter chain and never keep decode surfaces', async () => {
    const [nvenc, vaapi, qsv] = await Promise.all([fakeHw('nvenc'), fakeHw('vaapi'), fakeHw('qsv')]);
    expect(vaapi.device).to.equal(path.join(devDir, 'dri', 'renderD128'));
    expect(vaapi.HWUPLOAD).to.equal(',format=nv12,hwupload');
    expect(vaapi.PRESET_ARGS).to.equal('');
    expect(ffmpegArgsFor(vaapi)).to.include.members(['-hwaccel', 'vaapi', '-filter_hw_device']);
    expect(qsv.HWUPLOAD).to.equal(',format=nv12,hwupload=extra_hw_frames=64');
    expect(ffmpegArgsFor(qsv)).to.include('-filter_hw_device');
    for (const hw of [nvenc, vaapi, qsv]) expect(hw.HW).to.not.include('hwaccel_output_format');
  });

  it('a listed encoder whose test encode fails is not chosen', async function () {
    const listed = await ffmpeg(['-hide_banner', '-encoders']);
    if (!listed.stdout.toString().includes('h264_nvenc')) this.skip();
    // This host has a fake /dev/nvidia0 but no CUDA driver, so the probe fails.
    const hw = await detectHwAccel({ ffmpegPath: FFMPEG, mode: 'nvenc', devDir });
    if (hw.type === 'nvenc') this.skip(); // a real GPU after all
    expect(hw.type).to.equal('cpu');
    expect(hw.fallbackReason).to.match(/test encode/);
  });
});
