// Transcodes reach UA-checking providers: FFmpeg sends the stream's user agent (else
// DEFAULT_USER_AGENT) and its custom headers, as the origin records them.
import { expect } from 'chai';
import { DEFAULT_USER_AGENT } from '../src/config.js';
import { headersBlock, withInputOptions } from '../src/streams/transcode/input-options.js';
import { apiCall } from './support/api-call.js';
import { startOrigin, type Origin } from './support/origin.js';
import { startProxy, type TestProxy } from './support/proxy.js';
import { openViewer, waitFor } from './support/ts-viewer.js';

const COPY = '-i {input_url} -c copy {output_args}';

describe('transcode input options (-user_agent, -headers)', function () {
  this.timeout(60_000);
  let origin: Origin;
  let proxy: TestProxy;

  before(async () => {
    origin = await startOrigin();
    proxy = await startProxy({ SHARED_STREAM_GRACE: '0.2' });
  });
  after(async () => {
    await proxy?.close();
    await origin?.close();
  });

  async function playUntilOriginSeesIt(path: string, body: Record<string, unknown>) {
    const created = await apiCall<{ stream_id: string; ffmpeg_args: string[] }>(proxy.base, '/transcode', {
      method: 'POST', body: { url: origin.url(path), profile: COPY, ...body },
    });
    expect(created.status, JSON.stringify(created.body)).to.equal(200);
    const viewer = openViewer(proxy.url(`/stream/${created.body.stream_id}`));
    try {
      expect(await viewer.status).to.equal(200);
      await waitFor(() => viewer.bytes() > 188 * 50, 20_000, 'transcoded bytes');
      return origin.lastHeaders(path)!;
    } finally {
      viewer.close();
    }
  }

  it("FFmpeg sends the stream's user_agent and custom headers to the origin", async () => {
    const seen = await playUntilOriginSeesIt('/live/ua-custom.ts', {
      user_agent: 'EditorPlaylistAgent/1.0 (provider check)',
      headers: { 'X-Provider-Key': 'k-123', Referer: 'http://portal.example/' },
    });
    expect(seen['user-agent']).to.equal('EditorPlaylistAgent/1.0 (provider check)');
    expect(seen['x-provider-key']).to.equal('k-123');
    expect(seen.referer).to.equal('http://portal.example/');
  });

  it('without a user_agent FFmpeg sends DEFAULT_USER_AGENT, never Lavf/…', async () => {
    const seen = await playUntilOriginSeesIt('/live/ua-default.ts', {});
    expect(seen['user-agent']).to.equal(DEFAULT_USER_AGENT);
    expect(seen['user-agent']).to.not.match(/^Lavf/);
  });

  it('a header value with CR/LF is a 422, nothing is created', async () => {
    const res = await apiCall<{ code: string }>(proxy.base, '/transcode', {
      method: 'POST',
      body: { url: origin.url('/live/ua-evil.ts'), profile: COPY, headers: { 'X-A': 'a\r\nX-Injected: 1' } },
    });
    expect(res.status).to.equal(422);
    expect(res.body.code).to.equal('VALIDATION_ERROR');
    expect(origin.totalRequests('/live/ua-evil.ts')).to.equal(0);
  });

  it('the options go right before the one -i, only for http(s) inputs; the block is CRLF-joined', () => {
    const argv = ['-re', '-i', 'http://h/x.ts', '-c', 'copy', '-f', 'mpegts', 'pipe:1'];
    const out = withInputOptions(argv, { renderedUrl: 'http://h/x.ts', userAgent: 'UA/1', headers: { A: '1', B: '2' } });
    expect(out).to.deep.equal(['-re', '-user_agent', 'UA/1', '-headers', 'A: 1\r\nB: 2\r\n', '-i', 'http://h/x.ts', '-c', 'copy', '-f', 'mpegts', 'pipe:1']);
    const piped = withInputOptions(argv, { renderedUrl: 'http://h/x.ts', inputUrl: 'pipe:0', userAgent: 'UA/1', headers: { A: '1' } });
    expect(piped).to.deep.equal(['-re', '-i', 'pipe:0', '-c', 'copy', '-f', 'mpegts', 'pipe:1']);
    expect(() => headersBlock({ A: 'x\ny' })).to.throw(/line breaks/);
    expect(() => headersBlock({ 'A B': 'x' })).to.throw(/header name/);
  });
});
