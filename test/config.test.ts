import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ConfigError, DEFAULT_USER_AGENT, loadConfig, parseConfig } from '../src/config.js';

const OPTS = { cpus: 4, hostname: 'node-a', tmpdir: '/tmp/x' };

function problemsOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ConfigError);
    return err as ConfigError;
  }
  expect.fail('expected a ConfigError');
}

describe('config', () => {
  describe('parseConfig defaults', () => {
    it('fills every field from an empty env', () => {
      const c = parseConfig({}, OPTS);
      expect(c).to.deep.equal({
        host: '0.0.0.0',
        port: 8085,
        workers: 4,
        rootPath: '/m3u-proxy',
        apiToken: undefined,
        logLevel: 'info',
        logFormat: 'json',
        redisEnabled: false,
        redisUrl: 'redis://localhost:6379/0',
        redisUrlSafe: 'redis://localhost:6379/0',
        redisHost: 'localhost',
        redisPort: 6379,
        redisDb: 0,
        redisPassword: undefined,
        redisKeyPrefix: '',
        transcodingPooling: true,
        maxClientsPerSharedStream: 10,
        sharedStreamTimeoutMs: 300_000,
        sharedStreamGraceMs: 3_000,
        sharingStrategy: 'url_profile',
        workerId: 'node-a',
        heartbeatIntervalMs: 30_000,
        cleanupIntervalMs: 60_000,
        leaseTtlMs: 5000,
        drainTimeoutMs: 30_000,
        clientTimeoutMs: 10_000,
        streamTimeoutMs: 15_000,
        defaultUserAgent: DEFAULT_USER_AGENT,
        connectionTimeoutMs: 10_000,
        readTimeoutMs: 30_000,
        liveChunkTimeoutMs: 15_000,
        streamRetryAttempts: 3,
        streamRetryDelayMs: 1_000,
        streamRetryExponentialBackoff: false,
        streamTotalTimeoutMs: 30_000,
        maxFailoverAttempts: 0,
        bitrateMonitoring: false,
        minBitrateThreshold: 62500,
        bitrateCheckIntervalMs: 5_000,
        bitrateFailoverThreshold: 3,
        bitrateMonitoringGraceMs: 10_000,
        strictLiveTs: false,
        useStickySession: false,
        channelBufferBytes: 8_388_608,
        channelBufferMs: 4_000,
        channelCoalesceMs: 50,
        hlsTempDir: '/tmp/x',
        hlsWaitTimeMs: 10_000,
        hlsGcEnabled: true,
        hlsGcIntervalMs: 600_000,
        hlsGcAgeMs: 3_600_000,
        profilesDir: path.resolve('profiles'),
        ffmpegPath: 'ffmpeg',
        hwAccel: 'auto',
        renderThreads: 2,
        templateAllowedOptions: '',
        templateAllowedFilters: '',
        upstreamTlsVerify: true,
        metricsPublic: false,
        trustProxy: 'loopback',
        urlSigningSecret: undefined,
        signedUrlTtlMs: 21_600_000,
        maxBodyBytes: 1_048_576,
        viewerHandoff: true,
        viewerHandoffSpreadFrom: 400,
        viewerMaxDrops: 5,
        viewerStallTimeoutMs: 15_000,
        maxViewersPerWorker: 0,
        admissionLaggingShare: 0.1,
        admissionShedShare: 0.03,
        admissionQueueMs: 5000,
        admissionMaxWaitMs: 0,
        admissionMinIntake: 30,
        relayHost: '127.0.0.1',
        relayPort: 0,
        relayAdvertiseHost: '127.0.0.1',
        streamlinkPath: 'streamlink',
        ytdlpPath: 'yt-dlp',
        resolverTimeoutMs: 30_000,
        silenceDetection: false,
        silenceThresholdDb: -50,
        silenceDurationMs: 3000,
        silenceCheckIntervalMs: 10_000,
        silenceFailoverThreshold: 3,
        silenceMonitoringGraceMs: 15_000,
        hlsBroadcastDir: '/tmp/m3u-proxy-broadcasts',
        dvrRecordingDir: '/tmp/m3u-proxy-dvr',
        broadcastGcEnabled: true,
        broadcastCallbackTimeoutMs: 3000,
        broadcastMaxStartRetries: 3,
        broadcastStartRetryWindowMs: 300_000,
        broadcastStartRetryCooldownMs: 15_000,
        broadcastStartFailureGraceMs: 3000,
        broadcastSubtitleSyncOffset: 1,
      });
    });

    it('falls back to the machine for workers, worker id and temp dir', () => {
      const c = parseConfig({});
      expect(c.workers).to.equal(os.availableParallelism());
      expect(c.hlsTempDir).to.equal(path.resolve(os.tmpdir()));
      expect(c.workerId).to.match(/^[A-Za-z0-9_.-]+$/);
    });

    it('treats empty and blank strings as unset', () => {
      const c = parseConfig({ PORT: '', HOST: '  ', LOG_LEVEL: '', REDIS_ENABLED: '' }, OPTS);
      expect(c.port).to.equal(8085);
      expect(c.host).to.equal('0.0.0.0');
      expect(c.logLevel).to.equal('info');
      expect(c.redisEnabled).to.equal(false);
    });

    it('returns a frozen object', () => {
      const c = parseConfig({}, OPTS);
      expect(Object.isFrozen(c)).to.equal(true);
      expect(() => {
        (c as { port: number }).port = 1;
      }).to.throw(TypeError);
    });
  });

  describe('conversions', () => {
    it('turns seconds (with decimals) into milliseconds', () => {
      const c = parseConfig(
        {
          SHARED_STREAM_GRACE: '0.5',
          SHARED_STREAM_TIMEOUT: '0',
          HEARTBEAT_INTERVAL: '2.25',
          CLIENT_TIMEOUT: '7',
          SIGNED_URL_TTL: '86400',
          VIEWER_STALL_TIMEOUT: '.75',
        },
        OPTS,
      );
      expect(c.sharedStreamGraceMs).to.equal(500);
      expect(c.sharedStreamTimeoutMs).to.equal(0);
      expect(c.heartbeatIntervalMs).to.equal(2250);
      expect(c.clientTimeoutMs).to.equal(7000);
      expect(c.signedUrlTtlMs).to.equal(86_400_000);
      expect(c.viewerStallTimeoutMs).to.equal(750);
    });

    it('keeps LEASE_TTL_MS in milliseconds', () => {
      expect(parseConfig({ LEASE_TTL_MS: '1500' }, OPTS).leaseTtlMs).to.equal(1500);
    });

    it('reads booleans in every accepted spelling', () => {
      for (const [v, want] of [
        ['true', true],
        ['TRUE', true],
        ['1', true],
        ['yes', true],
        ['On', true],
        ['false', false],
        ['0', false],
        ['NO', false],
        ['off', false],
      ] as const) {
        expect(parseConfig({ REDIS_ENABLED: v }, OPTS).redisEnabled, v).to.equal(want);
        expect(parseConfig({ ENABLE_TRANSCODING_POOLING: v }, OPTS).transcodingPooling, v).to.equal(want);
      }
    });

    it('reads enums case-insensitively', () => {
      const c = parseConfig(
        { LOG_LEVEL: 'DEBUG', LOG_FORMAT: 'pretty', HW_ACCEL: 'nvenc', STREAM_SHARING_STRATEGY: 'url_only' },
        OPTS,
      );
      expect(c.logLevel).to.equal('debug');
      expect(c.logFormat).to.equal('pretty');
      expect(c.hwAccel).to.equal('nvenc');
      expect(c.sharingStrategy).to.equal('url_only');
    });

    it('accepts REDIS_PORT as an alias and lets REDIS_SERVER_PORT win', () => {
      expect(parseConfig({ REDIS_PORT: '6380' }, OPTS).redisPort).to.equal(6380);
      expect(parseConfig({ REDIS_SERVER_PORT: '6381' }, OPTS).redisPort).to.equal(6381);
      const both = parseConfig({ REDIS_PORT: '6380', REDIS_SERVER_PORT: '6381' }, OPTS);
      expect(both.redisPort).to.equal(6381);
      expect(both.redisUrl).to.equal('redis://localhost:6381/0');
    });

    it('normalises ROOT_PATH', () => {
      const root = (v: string | undefined) => parseConfig({ ROOT_PATH: v }, OPTS).rootPath;
      expect(root(undefined)).to.equal('/m3u-proxy');
      expect(root('')).to.equal('');
      expect(root('/')).to.equal('');
      expect(root('/proxy/')).to.equal('/proxy');
      expect(root('/a/b//')).to.equal('/a/b');
      expect(root('/api')).to.equal('/api');
      expect(problemsOf(() => root('proxy')).problems[0]).to.contain('ROOT_PATH');
    });

    it('derives REDIS_URL from its parts and hides the password', () => {
      const c = parseConfig(
        { REDIS_HOST: 'redis.internal', REDIS_SERVER_PORT: '6390', REDIS_DB: '2', REDIS_PASSWORD: 'p@ss/word' },
        OPTS,
      );
      expect(c.redisUrl).to.equal('redis://:p%40ss%2Fword@redis.internal:6390/2');
      expect(new URL(c.redisUrl).password).to.equal('p%40ss%2Fword');
      expect(c.redisPassword).to.equal('p@ss/word');
      expect(c.redisUrlSafe).to.equal('redis://:***@redis.internal:6390/2');
      expect(c.redisUrlSafe).not.to.contain('p%40ss');
    });

    it('uses an explicit REDIS_URL as given and masks it too', () => {
      const c = parseConfig({ REDIS_URL: 'rediss://user:secret@cache:6380/1', REDIS_HOST: 'ignored' }, OPTS);
      expect(c.redisUrl).to.equal('rediss://user:secret@cache:6380/1');
      expect(c.redisUrlSafe).to.equal('rediss://user:***@cache:6380/1');
    });

    it('brackets an IPv6 REDIS_HOST', () => {
      expect(parseConfig({ REDIS_HOST: '::1' }, OPTS).redisUrl).to.equal('redis://[::1]:6379/0');
    });

    it('turns an empty API_TOKEN into undefined', () => {
      expect(parseConfig({ API_TOKEN: '' }, OPTS).apiToken).to.equal(undefined);
      expect(parseConfig({ API_TOKEN: 'tok' }, OPTS).apiToken).to.equal('tok');
    });

    it('reads TRUST_PROXY as boolean, hop count or list', () => {
      const tp = (v: string) => parseConfig({ TRUST_PROXY: v }, OPTS).trustProxy;
      expect(tp('true')).to.equal(true);
      expect(tp('false')).to.equal(false);
      expect(tp('2')).to.equal(2);
      expect(tp('loopback, 10.0.0.0/8 ,::1')).to.equal('loopback,10.0.0.0/8,::1');
      expect(problemsOf(() => tp('lopback')).problems[0]).to.contain('TRUST_PROXY');
    });

    it('resolves PROFILES_DIR against the cwd and accepts other strings as given', () => {
      const c = parseConfig(
        { PROFILES_DIR: 'custom/profiles', FFMPEG_PATH: '/usr/bin/ffmpeg', WORKER_ID: 'w-1.a_b', MIN_BITRATE_THRESHOLD: '1000.5' },
        OPTS,
      );
      expect(c.profilesDir).to.equal(path.resolve('custom/profiles'));
      expect(c.ffmpegPath).to.equal('/usr/bin/ffmpeg');
      expect(c.workerId).to.equal('w-1.a_b');
      expect(c.minBitrateThreshold).to.equal(1000.5);
    });
  });

  describe('validation', () => {
    it('reports every bad variable at once', () => {
      const err = problemsOf(() =>
        parseConfig(
          {
            PORT: 'abc',
            WORKERS: '0',
            LOG_LEVEL: 'loud',
            REDIS_ENABLED: 'maybe',
            REDIS_URL: 'http://cache:6379',
            HEARTBEAT_INTERVAL: '0',
            LEASE_TTL_MS: '100',
            HW_ACCEL: 'cuda',
            URL_SIGNING_SECRET: 'short',
            WORKER_ID: 'bad id!',
            CHANNEL_BUFFER_BYTES: '1.5',
          },
          OPTS,
        ),
      );
      const vars = [
        'PORT',
        'WORKERS',
        'LOG_LEVEL',
        'REDIS_ENABLED',
        'REDIS_URL',
        'HEARTBEAT_INTERVAL',
        'LEASE_TTL_MS',
        'HW_ACCEL',
        'URL_SIGNING_SECRET',
        'WORKER_ID',
        'CHANNEL_BUFFER_BYTES',
      ];
      expect(err.problems).to.have.length(vars.length);
      for (const v of vars) {
        expect(err.problems.filter((p) => p.startsWith(`${v}=`)), v).to.have.length(1);
        expect(err.message).to.contain(`${v}=`);
      }
      expect(err.message).to.contain('"abc"');
      expect(err.message).to.contain('an integer from 0 to 65535');
      // A secret is never echoed back.
      expect(err.message).not.to.contain('short');
    });

    it('rejects out-of-range and malformed numbers', () => {
      for (const env of [
        { PORT: '65536' },
        { PORT: '-1' },
        { PORT: '80.5' },
        { REDIS_PORT: '0' },
        { REDIS_DB: '-1' },
        { CLIENT_TIMEOUT: '-3' },
        { CLIENT_TIMEOUT: '10s' },
        { CLIENT_TIMEOUT: '0.0001' },
        { HEARTBEAT_INTERVAL: '1e3' },
        { DRAIN_TIMEOUT: '3000000' },
        { MAX_BODY_BYTES: '1023' },
        { VIEWER_MAX_DROPS: '0' },
        { MIN_BITRATE_THRESHOLD: '-1' },
        { STREAM_SHARING_STRATEGY: 'sometimes' },
      ]) {
        const [name] = Object.keys(env);
        const err = problemsOf(() => parseConfig(env, OPTS));
        expect(err.problems, name).to.have.length(1);
        expect(err.problems[0]).to.contain(name);
      }
    });

    it('hides the password of a bad REDIS_URL', () => {
      const err = problemsOf(() => parseConfig({ REDIS_URL: 'http://u:hunter2@cache' }, OPTS));
      expect(err.message).to.contain('REDIS_URL');
      expect(err.message).not.to.contain('hunter2');
    });
  });

  describe('loadConfig', () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), 'm3u-config-'));
    });
    afterEach(() => {
      rmSync(dir, { recursive: true, force: true });
    });

    it('reads the env file and lets real variables win', () => {
      const envFile = path.join(dir, 'test.env');
      writeFileSync(
        envFile,
        ['# comment', 'PORT=9000', 'LOG_LEVEL=debug', 'API_TOKEN="from file"', 'SHARED_STREAM_GRACE=1.5'].join('\n'),
      );
      const c = loadConfig({ envFile, env: { PORT: '9100' } });
      expect(c.port).to.equal(9100);
      expect(c.logLevel).to.equal('debug');
      expect(c.apiToken).to.equal('from file');
      expect(c.sharedStreamGraceMs).to.equal(1500);
    });

    it('follows ENV_FILE', () => {
      const envFile = path.join(dir, 'other.env');
      writeFileSync(envFile, 'PORT=9200\n');
      expect(loadConfig({ env: { ENV_FILE: envFile } }).port).to.equal(9200);
    });

    it('fails when a named env file is missing', () => {
      const err = problemsOf(() => loadConfig({ envFile: path.join(dir, 'nope.env'), env: {} }));
      expect(err.message).to.contain('nope.env');
    });

    it('reports problems from the file like any other', () => {
      const envFile = path.join(dir, 'bad.env');
      writeFileSync(envFile, 'PORT=abc\nLOG_FORMAT=xml\n');
      expect(problemsOf(() => loadConfig({ envFile, env: {} })).problems).to.have.length(2);
    });
  });

  describe('exitOnConfigError', () => {
    it('prints the problems and exits with code 1', () => {
      const here = path.dirname(fileURLToPath(import.meta.url));
      const mod = pathToFileURL(path.resolve(here, '../src/config.js')).href;
      const code = [
        `import { loadConfig, exitOnConfigError } from ${JSON.stringify(mod)};`,
        `try { loadConfig(); } catch (err) { exitOnConfigError(err); }`,
        `console.log('not reached');`,
      ].join('\n');
      const res = spawnSync(process.execPath, ['--input-type=module', '-e', code], {
        env: { PATH: process.env.PATH, PORT: 'abc' },
        cwd: os.tmpdir(),
        encoding: 'utf8',
      });
      expect(res.status).to.equal(1);
      expect(res.stderr).to.contain('PORT');
      expect(res.stderr).to.contain('abc');
      expect(res.stdout).not.to.contain('not reached');
    });

    it('rethrows anything else', async () => {
      const { exitOnConfigError } = await import('../src/config.js');
      const boom = new Error('boom');
      expect(() => exitOnConfigError(boom)).to.throw(boom);
    });
  });
});
