// m3u-editor's sequence of calls for one channel and one transcode, as its HTTP client sends
// them (X-API-Token, JSON bodies, the /m3u-proxy base path, metadata as it builds it), end to
// end against a real origin and FFmpeg: a regression in any call it makes fails here.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { apiCall } from './support/api-call.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { openViewer, waitFor } from './support/ts-viewer.js';

const TOKEN = 'editor-replay-token';
const PLAYLIST = '5b0c2e0a-7f0e-4c55-9d7e-1a2b3c4d5e6f';

function ffmpegPids(marker: string): number[] {
  const out = execFileSync('ps', ['-eo', 'pid=,args='], { encoding: 'utf8' });
  return out.split('\n').filter((l) => /\bffmpeg\b/.test(l) && l.includes(marker)).map((l) => Number(l.trim().split(/\s+/)[0]));
}

interface ByMetadata {
  active_only: boolean;
  matching_streams: Array<{ stream_id: string; client_count: number; metadata: Record<string, string>; is_active: boolean; stream_type: string }>;
  total_matching: number;
  total_clients: number;
}

describe('m3u-editor replay: one channel and one transcode, call by call', function () {
  this.timeout(120_000);
  let origin: Origin;
  let proxy: TestProxy;
  // The editor talks to `{host}:{port}/m3u-proxy`-less API URLs and hands players the public
  // `/m3u-proxy/stream/{id}?username=` URL; both go through here.
  const api = <T = Record<string, unknown>>(path: string, opts: Parameters<typeof apiCall>[2] = {}) =>
    apiCall<T>(proxy.base, path, { token: TOKEN, ...opts });
  const activeCount = async () =>
    (await api<ByMetadata>(`/streams/by-metadata?field=playlist_uuid&value=${PLAYLIST}&active_only=true`)).body;
  const counts = async () =>
    (await api<{ field: string; counts: Record<string, number> }>(`/streams/counts-by-metadata?field=playlist_uuid&values=${PLAYLIST},other`)).body;

  before(async () => {
    origin = await startOrigin();
    proxy = await startProxy({ API_TOKEN: TOKEN, SHARED_STREAM_GRACE: '0.5' });
  });
  after(async () => {
    await proxy?.close();
    await origin?.close();
  });

  it('direct channel: capacity check, create with metadata, play with ?username=, count, stop by metadata with force=false and client_id', async () => {
    const marker = '/live/editor-channel-42.ts';
    // 1. Capacity check before creating (getActiveStreamsCountByMetadata).
    expect((await activeCount()).total_clients).to.equal(0);

    // 2. createStream(): url, metadata, user_agent, headers (normalized key => value).
    const created = await api<{ stream_id: string; stream_endpoint: string; stream_type: string; metadata: Record<string, string> }>('/streams', {
      method: 'POST',
      body: {
        url: origin.url(marker),
        metadata: {
          // A custom playlist has no strict_live_ts column: the editor sends null.
          id: 42, type: 'channel', playlist_uuid: PLAYLIST, strict_live_ts: null,
          original_channel_id: 42, original_playlist_uuid: PLAYLIST, is_failover: false, provider_profile_id: 7,
        },
        user_agent: 'VLC/3.0.20 LibVLC/3.0.20',
        headers: { 'X-Playlist': 'main' },
      },
    });
    expect(created.status, JSON.stringify(created.body)).to.equal(200);
    const id = created.body.stream_id;
    expect(created.body.stream_endpoint).to.equal(`/stream/${id}`);
    expect(created.body.metadata).to.include({ id: '42', playlist_uuid: PLAYLIST, is_failover: 'false' });
    expect(created.body.metadata).to.not.have.property('strict_live_ts');

    // 3. The player URL the editor builds (buildProxyUrl + appendProxyTraceParams).
    const viewer = openViewer(proxy.url(`/m3u-proxy/stream/${id}?username=bob`));
    try {
      expect(await viewer.status).to.equal(200);
      const clientId = String((await viewer.headers)['x-client-id']);
      await waitFor(() => viewer.bytes() > 188 * 100, 20_000, 'channel bytes');
      expect(origin.lastHeaders(marker)).to.include({ 'user-agent': 'VLC/3.0.20 LibVLC/3.0.20', 'x-playlist': 'main' });

      // 4. Counts by metadata (connection accounting), the monitor list and isChannelActive.
      const active = await activeCount();
      expect(active.total_matching).to.equal(1);
      expect(active.total_clients).to.equal(1);
      expect(active.matching_streams[0]).to.include({ stream_id: id, client_count: 1, is_active: true });
      expect((await counts()).counts).to.deep.equal({ [PLAYLIST]: 1, other: 0 });
      const channels = await api<ByMetadata>('/streams/by-metadata?field=type&value=channel&active_only=true');
      expect(channels.body.matching_streams.some((s) => s.metadata.id === '42' && s.client_count > 0)).to.equal(true);
      const monitor = await api<{ streams: Array<{ stream_id: string; metadata: Record<string, string>; client_count: number }> }>('/streams');
      expect(monitor.body.streams.find((s) => s.stream_id === id)).to.deep.include({ client_count: 1 });
      const clients = await api<{ clients: Array<{ client_id: string; username: string | null; stream_id: string }> }>('/clients');
      expect(clients.body.clients.find((c) => c.client_id === clientId)).to.include({ username: 'bob', stream_id: id });

      // 5. Stop by metadata, force=false: another viewer's id keeps it, its own id stops it.
      // stopStreamsByMetadata() sends its parameters as Laravel's Http::delete($url, $params)
      // does: a JSON body (exclude_channel_id cast to a string), not a query.
      const excluded = await api<{ deleted_count: number; skipped_streams: Array<{ reason: string }> }>('/streams/by-metadata', {
        method: 'DELETE', body: { field: 'playlist_uuid', value: PLAYLIST, exclude_channel_id: '42' },
      });
      expect(excluded.status, JSON.stringify(excluded.body)).to.equal(200);
      expect(excluded.body.deleted_count).to.equal(0);
      expect(excluded.body.skipped_streams).to.deep.equal([{ stream_id: id, reason: 'excluded_by_channel_id' }]);
      const kept = await api<{ deleted_count: number; skipped_streams: Array<{ reason: string; active_clients: number }> }>('/streams/by-metadata', {
        method: 'DELETE', body: { field: 'playlist_uuid', value: PLAYLIST, force: false, client_id: 'someone-else' },
      });
      expect(kept.body.deleted_count).to.equal(0);
      expect(kept.body.skipped_streams).to.deep.equal([{ stream_id: id, reason: 'has_active_clients', active_clients: 1 }]);
      const stopped = await api<{ deleted_count: number; deleted_streams: string[] }>(
        `/streams/by-metadata?field=playlist_uuid&value=${PLAYLIST}&force=false&client_id=${encodeURIComponent(clientId)}`, { method: 'DELETE' },
      );
      expect(stopped.body).to.deep.include({ deleted_count: 1, deleted_streams: [id] });
      await viewer.closed;
      await origin.waitForClosedAll(marker, 10_000);
    } finally {
      viewer.close();
    }
    expect((await activeCount()).total_clients).to.equal(0);
    expect((await api(`/streams/${id}`)).status).to.equal(404);
  });

  it('transcode: create with its metadata and profile_variables, play, count, stop by metadata with force=false and client_id', async () => {
    const marker = '/live/editor-transcode-43.ts';
    const created = await api<{ stream_id: string; stream_type: string; ffmpeg_args: string[]; metadata: Record<string, string> }>('/transcode', {
      method: 'POST',
      body: {
        url: origin.url(marker),
        profile: '-i {input_url} -c:v copy -c:a {audio_codec|aac} {output_args}',
        metadata: {
          id: 43, type: 'channel', playlist_uuid: PLAYLIST, profile_id: 3,
          original_channel_id: 43, original_playlist_uuid: PLAYLIST, is_failover: false,
        },
        user_agent: 'TiviMate/5.0',
        profile_variables: { audio_codec: 'copy' },
      },
    });
    expect(created.status, JSON.stringify(created.body)).to.equal(200);
    const id = created.body.stream_id;
    expect(created.body.stream_type).to.equal('transcoded');
    expect(created.body.metadata).to.include({ id: '43', profile_id: '3', transcoding: 'true' });

    const viewer = openViewer(proxy.url(`/m3u-proxy/stream/${id}?username=carol`));
    try {
      expect(await viewer.status).to.equal(200);
      const clientId = String((await viewer.headers)['x-client-id']);
      await waitFor(() => viewer.bytes() > 188 * 100, 30_000, 'transcoded bytes');
      expect((await viewer.firstBytes(1))[0]).to.equal(0x47);
      expect(ffmpegPids(marker)).to.have.length(1);
      expect(origin.lastHeaders(marker)!['user-agent']).to.equal('TiviMate/5.0');

      // findExistingPooledStream: the editor finds the running transcode by its metadata.
      const pooled = await api<ByMetadata>(`/streams/by-metadata?field=profile_id&value=3&active_only=true`);
      expect(pooled.body.matching_streams.map((s) => s.stream_id)).to.deep.equal([id]);
      expect((await counts()).counts[PLAYLIST]).to.equal(1);
      const entry = await api<{ stream: { stream_type: string; transcode: { fps: number | null } | null } }>(`/streams/${id}`);
      expect(entry.body.stream.stream_type).to.equal('Transcoding');

      const stopped = await api<{ deleted_count: number }>(
        `/m3u-proxy/streams/by-metadata?field=playlist_uuid&value=${PLAYLIST}&force=false&client_id=${encodeURIComponent(clientId)}`, { method: 'DELETE' },
      );
      expect(stopped.body.deleted_count).to.equal(1);
      await viewer.closed;
    } finally {
      viewer.close();
    }
    await waitFor(() => ffmpegPids(marker).length === 0, 10_000, 'FFmpeg to stop');
    await origin.waitForClosedAll(marker, 10_000);
    expect((await counts()).counts).to.deep.equal({ [PLAYLIST]: 0, other: 0 });
  });
});
