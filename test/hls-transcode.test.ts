import { expect } from 'chai';
import { execFile, execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, rm, utimes } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { createLogger } from '../src/logger.js';
import { renderWith } from '../src/render/render-task.js';
import { CPU_VARIABLES } from '../src/ffmpeg/hw-accel.js';
import { MANAGED_SUBDIR, ManagedOutputs, managedDirPattern } from '../src/streams/hls/managed-output.js';
import { startCluster, type TestCluster } from './support/cluster.js';
import { httpRequest } from './support/http-request.js';
import { startOrigin, type Origin } from './support/origin.js';
import { report } from './support/report.js';
import { waitFor } from './support/ts-viewer.js';

const execFileAsync = promisify(execFile);

// m3u-editor's shipped "Default HLS Profile", as the editor sends it.
const EDITOR_HLS =
  '-fflags +genpts+discardcorrupt+igndts -i {input_url} -c:v libx264 -preset faster -b:v {bitrate|2000k} -maxrate {maxrate|2500k} ' +
  '-bufsize {bufsize|2500k} -c:a aac -b:a {audio_bitrate|128k} -hls_time 2 -hls_list_size 30 -hls_flags program_date_time -f hls {output_args|index.m3u8}';
const URL_IN = 'http://127.0.0.1:9/live/x.ts';

function ffmpegOf(marker: string): Array<{ pid: number; ppid: number }> {
  const out = execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' });
  return out.split('\n').filter((l) => /\bffmpeg\b/.test(l) && l.includes(marker)).map((l) => {
    const [pid, ppid] = l.trim().split(/\s+/);
    return { pid: Number(pid), ppid: Number(ppid) };
  });
}

describe('HLS output of transcodes', function () {
  this.timeout(120_000);

  describe('rendering into the managed directory', () => {
    const root = '/var/hls';
    const render = (template: string) =>
      renderWith({ profiles: [], problems: [] }, {
        profilesDir: '', profile: null, template, variables: {}, inputUrl: URL_IN,
        hlsDir: managedDirPattern(root), hw: CPU_VARIABLES,
      });
    const dir = managedDirPattern(root);

    it("the editor's default HLS profile renders to the directory's playlist", () => {
      const r = render(EDITOR_HLS);
      expect(r.outputFormat).to.equal('hls');
      expect(r.output).to.equal(`${dir}/index.m3u8`);
      expect(r.argv.at(-1)).to.equal(`${dir}/index.m3u8`);
      expect(r.argv.filter((a) => a === 'pipe:1')).to.deep.equal([]);
    });

    it('a relative -hls_segment_filename lands inside; pipe: outputs are dropped; other paths are 400', () => {
      const r = render('-i {input_url} -c copy -f hls -hls_segment_filename seg_%03d.ts {output_args} pipe:1');
      expect(r.argv).to.include(`${dir}/seg_%03d.ts`);
      expect(r.argv).to.not.include('pipe:1');
      const code = (t: string): string => {
        try {
          render(t);
          return 'accepted';
        } catch (err) {
          return (err as { code: string }).code;
        }
      };
      expect(code('-i {input_url} -c copy -f hls -hls_segment_filename /tmp/seg_%03d.ts {output_args}')).to.equal('TEMPLATE_INVALID');
      expect(code('-i {input_url} -c copy -f hls -hls_segment_filename ../seg_%03d.ts {output_args}')).to.equal('TEMPLATE_INVALID');
      expect(code('-i {input_url} -c copy -f hls /etc/cron.d/x.m3u8')).to.equal('TEMPLATE_INVALID');
      expect(code('-i {input_url} -c copy -f hls {output_args} /tmp/other.m3u8')).to.equal('TEMPLATE_INVALID');
      // A TS template is unchanged: {output_args} is still MPEG-TS on stdout.
      expect(render('-i {input_url} -c copy {output_args}').argv.slice(-3)).to.deep.equal(['-f', 'mpegts', 'pipe:1']);
    });
  });

  describe('the GC sweep', () => {
    it('removes leftover directories older than the threshold, keeps young ones and live ones', async () => {
      const root = await mkdtemp(path.join(os.tmpdir(), 'hls-gc-'));
      const outputs = new ManagedOutputs({ root, logger: createLogger({ level: 'error', format: 'json', silent: true }), gc: { enabled: false, intervalMs: 1000, ageMs: 60_000 } });
      try {
        const base = path.join(root, MANAGED_SUBDIR);
        await mkdir(path.join(base, 'old-crashed'), { recursive: true });
        await mkdir(path.join(base, 'young'), { recursive: true });
        const old = new Date(Date.now() - 3_600_000);
        await utimes(path.join(base, 'old-crashed'), old, old);
        const live = await outputs.create('p1:1');
        await utimes(live.path, old, old);
        expect(await outputs.sweep()).to.deep.equal(['old-crashed']);
        expect((await readdir(base)).sort()).to.deep.equal([path.basename(live.path), 'young'].sort());
        await outputs.release('p1:1');
        expect(existsSync(live.path)).to.equal(false);
      } finally {
        await outputs.close();
        await rm(root, { recursive: true, force: true });
      }
    });
  });

  describe('through a cluster', () => {
    let origin: Origin;
    let cluster: TestCluster;
    let hlsRoot: string;

    before(async () => {
      origin = await startOrigin();
      hlsRoot = await mkdtemp(path.join(os.tmpdir(), 'hls-out-'));
      cluster = await startCluster({
        WORKERS: '2', SHARED_STREAM_GRACE: '1', CLIENT_TIMEOUT: '6',
        HLS_TEMP_DIR: hlsRoot, HLS_WAIT_TIME: '30',
      }, 60_000);
    });
    after(async () => {
      await cluster?.stop();
      await origin?.close();
      await rm(hlsRoot, { recursive: true, force: true });
      expect(ffmpegOf('/live/hls-tx'), 'no FFmpeg left behind').to.deep.equal([]);
    });

    it("the editor's default HLS profile plays through /hls/{id}/playlist.m3u8 from a non-owner; nothing is left after the last viewer", async () => {
      const marker = '/live/hls-tx.ts';
      const created = await cluster.api<{ stream_id: string; format: string; playlist_url: string; stream_endpoint: string }>('/transcode', {
        method: 'POST', body: JSON.stringify({ url: origin.url(marker), profile: EDITOR_HLS }),
      });
      expect(created.status, JSON.stringify(created.body)).to.equal(200);
      expect(created.body.format).to.equal('hls');
      const id = created.body.stream_id;
      expect(created.body.playlist_url).to.equal(`/hls/${id}/playlist.m3u8`);

      // The first playlist: FFmpeg starts on the owner, the answer waits for its first playlist.
      const t0 = Date.now();
      const first = await httpRequest(cluster.url(`/m3u-proxy/hls/${id}/playlist.m3u8?client_id=v1`));
      const firstMs = Date.now() - t0;
      expect(first.status, first.body.toString()).to.equal(200);
      expect(first.headers['content-type']).to.equal('application/vnd.apple.mpegurl');
      report('time to the first playlist of an HLS transcode (editor default profile)', `${firstMs} ms`);

      const procs = ffmpegOf(marker);
      expect(procs, execFileSync('ps', ['-eo', 'pid=,ppid=,args='], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(marker)).join('\n')).to.have.length(1);
      const workers = (await cluster.api<{ workers: Array<{ worker_id: string; pid: number }> }>('/workers')).body.workers;
      const owner = workers.find((w) => w.pid === procs[0]!.ppid)!.worker_id;

      // Ask until a non-owner worker answers (connections are spread over the workers).
      let fromOther = first;
      for (let i = 0; i < 20 && String(fromOther.headers['x-worker-id']) === owner; i++) {
        fromOther = await httpRequest(cluster.url(`/m3u-proxy/hls/${id}/playlist.m3u8?client_id=v1`));
      }
      expect(String(fromOther.headers['x-worker-id'])).to.not.equal(owner);
      const text = fromOther.body.toString('utf8');
      const uris = text.split('\n').filter((l) => l && !l.startsWith('#'));
      expect(uris.length).to.be.greaterThan(0);
      for (const u of uris) expect(u).to.match(new RegExp(`^/m3u-proxy/hls/${id}/segment\\.ts\\?seg=[A-Za-z0-9_.-]+&client_id=v1&exp=\\d+&sig=`));
      // A segment through the non-owner: MPEG-TS from the owner's directory.
      let seg = await httpRequest(cluster.url(uris[0]!));
      for (let i = 0; i < 20 && String(seg.headers['x-worker-id']) === owner; i++) seg = await httpRequest(cluster.url(uris[0]!));
      expect(String(seg.headers['x-worker-id'])).to.not.equal(owner);
      expect(seg.status).to.equal(200);
      expect(seg.headers['content-type']).to.equal('video/mp2t');
      expect(seg.body[0]).to.equal(0x47);
      // Tampered and unsigned names are refused; names with paths never reach the disk.
      expect((await httpRequest(cluster.url(uris[0]!.replace(/sig=[^&]+/, 'sig=AAAA')))).status).to.equal(403);
      const probe = await httpRequest(cluster.url(`/hls/${id}/segment.ts?seg=..%2F..%2Fetc%2Fpasswd`));
      expect(probe.status).to.equal(403);
      expect(probe.body.toString()).to.not.include('root:');

      // ffprobe plays the playlist through the proxy.
      const { stdout } = await execFileAsync('ffprobe', ['-v', 'error', '-show_entries', 'stream=codec_type', '-of', 'csv=p=0', cluster.url(`/hls/${id}/playlist.m3u8?client_id=v1`)], { timeout: 60_000 });
      expect([...new Set(stdout.split('\n').filter(Boolean))].sort()).to.deep.equal(['audio', 'video']);

      // One HLS viewer counted while it polls.
      expect((await httpRequest(cluster.url(`/hls/${id}/playlist.m3u8?client_id=v1`))).status).to.equal(200);
      const clients = (await cluster.api<{ clients: Array<{ client_id: string; stream_id: string }> }>('/clients')).body.clients.filter((c) => c.stream_id === id);
      expect(clients.map((c) => c.client_id).sort()).to.include('v1');
      const dirs = await readdir(path.join(hlsRoot, MANAGED_SUBDIR));
      expect(dirs).to.have.length(1);

      // The viewer stops polling: it leaves after CLIENT_TIMEOUT, FFmpeg stops after the grace, the directory goes.
      await waitFor(() => ffmpegOf(marker).length === 0, 40_000, 'the FFmpeg to stop');
      await waitFor(async () => (await readdir(path.join(hlsRoot, MANAGED_SUBDIR))).length === 0, 10_000, 'the directory to be removed');
      const after = (await cluster.api<{ clients: Array<{ stream_id: string }> }>('/clients')).body.clients.filter((c) => c.stream_id === id);
      expect(after).to.deep.equal([]);
    });
  });
});
