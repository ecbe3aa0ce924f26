// Issue 13, input 3: Xtream-style credentials (in the path, not the userinfo) and secret query
// parameters never reach an error detail on a public route, a log line, a /streams field
// that is not the URL itself, or the FFmpeg stderr relay.
import { expect } from 'chai';
import { redactUrl } from '../src/redact.js';
import { startCluster, type TestCluster } from './support/cluster.js';
import { httpRequest } from './support/http-request.js';
import { startOrigin, type Origin } from './support/origin.js';
import { waitFor } from './support/ts-viewer.js';

const SECRETS = /USER9|PASS9|TOK9|KEY9/;

describe('credential redaction (issue 13: input 3)', function () {
  this.timeout(60_000);

  it('one rule covers userinfo, Xtream paths, the short form and secret query parameters', () => {
    const cases: Array<[string, string]> = [
      ['http://u:p@h/x.ts', 'http://***@h/x.ts'],
      ['http://h:8080/live/USER/PASS/12.ts', 'http://h:8080/live/***/***/12.ts'],
      ['http://h/movie/USER/PASS/55.mkv', 'http://h/movie/***/***/55.mkv'],
      ['http://h/series/USER/PASS/9.mp4', 'http://h/series/***/***/9.mp4'],
      ['http://h/timeshift/USER/PASS/120/2024-01-01:10-00/7.ts', 'http://h/timeshift/***/***/120/2024-01-01:10-00/7.ts'],
      ['http://h:80/USER/PASS/12345', 'http://h:80/***/***/12345'],
      ['http://h:80/USER/PASS/12345.ts?x=1', 'http://h:80/***/***/12345.ts?x=1'],
      ['http://h/get.php?username=USER&password=PASS&type=m3u', 'http://h/get.php?username=***&password=***&type=m3u'],
      ['http://h/x.ts?token=T&api_key=K&key=K2&auth=A&sig=S', 'http://h/x.ts?token=***&api_key=***&key=***&auth=***&sig=***'],
      ['ffmpeg: http://h/live/USER/PASS/1.ts: Server returned 404', 'ffmpeg: http://h/live/***/***/1.ts: Server returned 404'],
      ['http://h/live/channel1.ts', 'http://h/live/channel1.ts'],
      ['http://h/a/b.ts', 'http://h/a/b.ts'],
      ['/streams/abc', '/streams/abc'],
    ];
    for (const [input, want] of cases) expect(redactUrl(input), input).to.equal(want);
  });

  describe('through a running cluster', () => {
    let origin: Origin;
    let cluster: TestCluster;

    before(async () => {
      origin = await startOrigin();
      cluster = await startCluster({ WORKERS: '1', LOG_LEVEL: 'debug', STREAM_RETRY_ATTEMPTS: '0', SHARED_STREAM_GRACE: '0.2' });
    });
    after(async () => {
      await cluster?.stop();
      await origin?.close();
    });

    it('a failing transcode of /series/USER/PASS/…?token= answers the public route without credentials', async () => {
      const url = origin.url('/series/USER9/PASS9/12.ts?token=TOK9');
      const created = await cluster.api<{ stream_id: string; ffmpeg_args: string[] }>('/transcode', {
        method: 'POST', body: JSON.stringify({ url, profile: '-i {input_url} -c copy {output_args}' }),
      });
      expect(created.status).to.equal(200);
      expect(JSON.stringify(created.body.ffmpeg_args)).to.not.match(SECRETS);
      const res = await httpRequest(cluster.url(`/stream/${created.body.stream_id}`));
      expect(res.status).to.equal(502);
      const body = JSON.parse(res.body.toString()) as { detail: string; code: string };
      expect(body.code).to.equal('UPSTREAM_UNAVAILABLE');
      expect(body.detail).to.match(/404|ffmpeg/i); // the cause is told …
      expect(body.detail).to.not.match(SECRETS); // … without the account
      // FFmpeg's stderr did quote the URL: the relay redacted it.
      await waitFor(() => cluster.logs.some((l) => l.source === 'ffmpeg' && /\*\*\*/.test(l.message)), 10_000, 'the ffmpeg stderr line');
    });

    it('VOD, timeshift and live streams with credentials fail without credentials in detail', async () => {
      for (const p of ['/movie/USER9/PASS9/404.mkv', '/timeshift/USER9/PASS9/60/2024-01-01:10-00/1.ts', '/status/403?password=PASS9&token=TOK9']) {
        const created = await cluster.api<{ stream_id: string }>('/streams', { method: 'POST', body: JSON.stringify({ url: origin.url(p) }) });
        const res = await httpRequest(cluster.url(`/stream/${created.body.stream_id}`));
        expect(res.status, p).to.equal(502);
        expect(res.body.toString()).to.not.match(SECRETS);
      }
      const tc = await cluster.api<Record<string, unknown>>('/test-connection', {
        method: 'POST', body: JSON.stringify({ url: origin.url('/get.php?username=USER9&password=PASS9&api_key=KEY9') }),
      });
      expect(tc.status).to.equal(200);
      expect(JSON.stringify(tc.body)).to.not.match(SECRETS);
    });

    it('no log line and no /streams field other than the URLs holds a credential', async () => {
      const list = await cluster.api<{ streams: Array<Record<string, unknown>> }>('/streams?active_only=false');
      expect(list.body.streams.length).to.be.greaterThan(0);
      for (const entry of list.body.streams) {
        const { original_url: _o, current_url: _c, failover_urls: _f, ...rest } = entry;
        expect(JSON.stringify(rest), String(entry.stream_id)).to.not.match(SECRETS);
      }
      const leaking = cluster.logs.filter((l) => SECRETS.test(JSON.stringify(l)));
      expect(leaking.map((l) => JSON.stringify(l))).to.deep.equal([]);
      expect(cluster.logs.length).to.be.greaterThan(5);
    });
  });
});
