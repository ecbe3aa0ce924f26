// The behaviour every Coordinator backend must share (memory is the reference). `c2` is a
// second handle on the same store (another worker); backends with one handle pass none.
import { expect } from 'chai';
import type {
  ClientRecord,
  Coordinator,
  CoordinatorEvent,
  StreamStatus,
  WorkerRecord,
} from '../../src/coordination/coordinator.js';
import type { StreamDefinition } from '../../src/streams/stream-definition.js';

export interface ContractSubject {
  c: Coordinator;
  c2?: Coordinator;
  cleanup(): Promise<void>;
}

export interface ContractHooks {
  /** Once before the suite (e.g. start a server). */
  before?(): Promise<void>;
  /** Once after the suite. */
  after?(): Promise<void>;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function streamDef(id: string, over: Partial<StreamDefinition> = {}): StreamDefinition {
  return {
    id,
    url: `http://origin.test/${id}.ts`,
    kind: 'live',
    failoverUrls: [],
    failoverResolverUrl: null,
    userAgent: null,
    headers: {},
    metadata: {},
    strictLiveTs: false,
    useStickySession: false,
    options: {},
    createdAt: '2024-01-01T00:00:00.000Z',
    ...over,
  };
}

export function clientRec(streamId: string, clientId: string, over: Partial<ClientRecord> = {}): ClientRecord {
  return {
    clientId,
    streamId,
    ipAddress: '10.0.0.7',
    userAgent: 'VLC/3.0',
    username: 'alice',
    workerId: 'w-1',
    connectedAt: '2024-01-01T00:00:00.000Z',
    lastAccess: '2024-01-01T00:00:05.000Z',
    bytesServed: 188 * 1000,
    segmentsServed: 3,
    ...over,
  };
}

export function workerRec(workerId: string, over: Partial<WorkerRecord> = {}): WorkerRecord {
  return {
    workerId,
    pid: 4242,
    host: 'node-a',
    startedAt: '2024-01-01T00:00:00.000Z',
    lastSeen: '2024-01-01T00:00:10.000Z',
    sources: ['live:abc:0'],
    viewers: 2,
    relay: '10.0.0.1:9000',
    relays: { receiving: 1, serving: 0 },
    ...over,
  };
}

export function statusRec(epoch: number, over: Partial<StreamStatus> = {}): StreamStatus {
  return {
    status: 'running',
    owner: 'w-1',
    pid: 1234,
    epoch,
    updatedAt: '2024-01-01T00:00:00.000Z',
    ...over,
  };
}

/** Subscribes and resolves with the first matching event (rejects after `ms`). */
export function nextEvent(
  coordinator: Coordinator,
  match: (e: CoordinatorEvent) => boolean,
  ms = 3000,
): Promise<CoordinatorEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching event within ${ms} ms`));
    }, ms);
    const off = coordinator.subscribe((e) => {
      if (!match(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

const byId = <T>(key: (t: T) => string) => (a: T, b: T) => key(a).localeCompare(key(b));

export function contract(
  name: string,
  make: () => Promise<ContractSubject>,
  hooks: ContractHooks = {},
): void {
  describe(`coordinator contract: ${name}`, function () {
    let subject: ContractSubject | undefined;
    let c: Coordinator;
    let c2: Coordinator;

    if (hooks.before) before(() => hooks.before?.());
    if (hooks.after) after(() => hooks.after?.());
    beforeEach(async () => {
      subject = await make();
      c = subject.c;
      c2 = subject.c2 ?? subject.c;
    });
    afterEach(async () => {
      await subject?.cleanup();
      subject = undefined;
    });

    describe('streams', () => {
      it('putStream creates, then updates keeping createdAt', async () => {
        const first = streamDef('s1', { createdAt: '2024-01-01T00:00:00.000Z' });
        expect(await c.putStream(first)).to.deep.equal(first);

        const update = streamDef('s1', {
          url: 'http://origin.test/other.m3u8',
          kind: 'hls',
          failoverUrls: ['http://backup.test/s1.m3u8'],
          headers: { Referer: 'http://x.test/' },
          metadata: { channel: 'one' },
          options: { silence: true, threshold: 3 },
          createdAt: '2025-06-01T00:00:00.000Z',
        });
        const stored = await c2.putStream(update);
        expect(stored).to.deep.equal({ ...update, createdAt: '2024-01-01T00:00:00.000Z' });
        expect(await c.getStream('s1')).to.deep.equal(stored);
        expect(await c2.getStream('s1')).to.deep.equal(stored);
      });

      it('getStream of an unknown id is null', async () => {
        expect(await c.getStream('nope')).to.equal(null);
      });

      it('lists and deletes streams', async () => {
        const a = await c.putStream(streamDef('a'));
        const b = await c2.putStream(streamDef('b', { createdAt: '2024-02-01T00:00:00.000Z' }));
        expect((await c2.listStreams()).sort(byId((s) => s.id))).to.deep.equal([a, b]);

        expect(await c2.deleteStream('a')).to.equal(true);
        expect(await c.deleteStream('a')).to.equal(false);
        expect(await c.getStream('a')).to.equal(null);
        expect(await c.listStreams()).to.deep.equal([b]);
      });

      it('deleting a stream also drops its status', async () => {
        await c.putStream(streamDef('s1'));
        expect(await c.setStreamStatus('s1', statusRec(5))).to.equal(true);
        await c.deleteStream('s1');
        expect(await c.getStreamStatus('s1')).to.equal(null);
        expect(await c.setStreamStatus('s1', statusRec(1))).to.equal(true);
      });
    });

    describe('stream status', () => {
      it('is null until written', async () => {
        await c.putStream(streamDef('s1'));
        expect(await c.getStreamStatus('s1')).to.equal(null);
      });

      it('is fenced by epoch: older rejected, equal or newer accepted', async () => {
        await c.putStream(streamDef('s1'));
        const two = statusRec(2, { status: 'starting', owner: 'w-1', pid: 11 });
        expect(await c.setStreamStatus('s1', two)).to.equal(true);
        expect(await c2.getStreamStatus('s1')).to.deep.equal(two);

        const stale = statusRec(1, { status: 'failed', owner: 'w-0', pid: 10 });
        expect(await c2.setStreamStatus('s1', stale)).to.equal(false);
        expect(await c.getStreamStatus('s1')).to.deep.equal(two);

        const same = statusRec(2, { status: 'running', updatedAt: '2024-01-01T00:01:00.000Z' });
        expect(await c.setStreamStatus('s1', same)).to.equal(true);
        expect(await c.getStreamStatus('s1')).to.deep.equal(same);

        const newer = statusRec(3, { status: 'stopped', owner: null, pid: null });
        expect(await c2.setStreamStatus('s1', newer)).to.equal(true);
        expect(await c.getStreamStatus('s1')).to.deep.equal(newer);
      });

      it('does not touch the definition', async () => {
        const def = await c.putStream(streamDef('s1'));
        await c.setStreamStatus('s1', statusRec(1));
        expect(await c.getStream('s1')).to.deep.equal(def);
        const again = await c.putStream(streamDef('s1', { url: 'http://origin.test/new.ts' }));
        expect(await c.getStreamStatus('s1')).to.deep.equal(statusRec(1));
        expect(await c.getStream('s1')).to.deep.equal(again);
      });
    });

    describe('leases', () => {
      it('acquire, renew and release with tokens; epoch grows on every acquisition', async () => {
        const lease = await c.acquireLease('lease:abc:0', 'w-1', 5000);
        expect(lease).to.not.equal(null);
        expect(lease!.key).to.equal('lease:abc:0');
        expect(lease!.token.startsWith('w-1:')).to.equal(true);
        expect(lease!.epoch).to.equal(1);
        expect(await c2.acquireLease('lease:abc:0', 'w-2', 5000)).to.equal(null);
        expect(await c2.leaseHolder('lease:abc:0')).to.equal(lease!.token);

        const forged = { ...lease!, token: 'w-2:0000000000000000' };
        expect(await c2.renewLease(forged, 5000)).to.equal(false);
        expect(await c2.releaseLease(forged)).to.equal(false);
        expect(await c.leaseHolder('lease:abc:0')).to.equal(lease!.token);

        expect(await c.renewLease(lease!, 5000)).to.equal(true);
        expect(await c.releaseLease(lease!)).to.equal(true);
        expect(await c.releaseLease(lease!)).to.equal(false);
        expect(await c.renewLease(lease!, 5000)).to.equal(false);
        expect(await c2.leaseHolder('lease:abc:0')).to.equal(null);

        const second = await c2.acquireLease('lease:abc:0', 'w-2', 5000);
        expect(second?.epoch).to.equal(2);
        expect(second?.token).to.not.equal(lease!.token);
        await c2.releaseLease(second!);
        expect((await c.acquireLease('lease:abc:0', 'w-1', 5000))?.epoch).to.equal(3);
        // Epochs are per key.
        expect((await c.acquireLease('lease:abc:1', 'w-1', 5000))?.epoch).to.equal(1);
      });

      it('expires after its TTL', async () => {
        const lease = await c.acquireLease('lease:ttl:0', 'w-1', 300);
        expect(await c2.acquireLease('lease:ttl:0', 'w-2', 300)).to.equal(null);
        await sleep(500);
        expect(await c.leaseHolder('lease:ttl:0')).to.equal(null);
        const next = await c2.acquireLease('lease:ttl:0', 'w-2', 5000);
        expect(next?.epoch).to.equal(lease!.epoch + 1);
        // The former holder can neither renew nor release what is no longer its lease.
        expect(await c.renewLease(lease!, 5000)).to.equal(false);
        expect(await c.releaseLease(lease!)).to.equal(false);
        expect(await c.leaseHolder('lease:ttl:0')).to.equal(next!.token);
      });

      it('renewing pushes the expiry out', async () => {
        const lease = await c.acquireLease('lease:renew:0', 'w-1', 300);
        await sleep(150);
        expect(await c.renewLease(lease!, 1000)).to.equal(true);
        await sleep(300);
        expect(await c2.leaseHolder('lease:renew:0')).to.equal(lease!.token);
      });

      it("releaseLeasesHeldBy removes only that holder's leases", async () => {
        await c.acquireLease('lease:a:0', 'w-1', 5000);
        await c.acquireLease('lease:b:0', 'w-1', 5000);
        const ten = await c2.acquireLease('lease:c:0', 'w-10', 5000);
        const two = await c2.acquireLease('lease:d:0', 'w-2', 5000);

        expect(await c2.releaseLeasesHeldBy('w-1')).to.equal(2);
        expect(await c.leaseHolder('lease:a:0')).to.equal(null);
        expect(await c.leaseHolder('lease:b:0')).to.equal(null);
        expect(await c.leaseHolder('lease:c:0')).to.equal(ten!.token);
        expect(await c.leaseHolder('lease:d:0')).to.equal(two!.token);
        expect((await c.acquireLease('lease:a:0', 'w-3', 5000))?.epoch).to.equal(2);
        expect(await c.releaseLeasesHeldBy('w-1')).to.equal(0);
      });
    });

    describe('clients', () => {
      it('stores records with a TTL and filters by stream', async () => {
        const short = clientRec('s1', 'c-short');
        const long = clientRec('s1', 'c-long', { username: null, bytesServed: 0 });
        const other = clientRec('s10', 'c-other', { workerId: 'w-2' });
        await c.putClient(short, 300);
        await c2.putClient(long, 10_000);
        await c.putClient(other, 10_000);

        const sort = byId<ClientRecord>((r) => r.clientId);
        expect((await c2.listClients('s1')).sort(sort)).to.deep.equal([long, short]);
        expect(await c.listClients('s10')).to.deep.equal([other]);
        expect((await c.listClients()).sort(sort)).to.deep.equal([long, other, short]);

        await sleep(500);
        expect(await c.listClients('s1')).to.deep.equal([long]);
      });

      it('hasClients: true while one live record of that stream exists, false once expired or deleted', async () => {
        expect(await c.hasClients('s1')).to.equal(false);
        await c.putClient(clientRec('s10', 'c-other'), 10_000);
        expect(await c2.hasClients('s1'), 'another stream whose id this one prefixes').to.equal(false);
        await c.putClient(clientRec('s1', 'c-short'), 300);
        expect(await c2.hasClients('s1')).to.equal(true);
        await sleep(500);
        expect(await c.hasClients('s1'), 'expired').to.equal(false);
        await c2.putClient(clientRec('s1', 'c-long'), 10_000);
        expect(await c.hasClients('s1')).to.equal(true);
        await c.deleteClient('s1', 'c-long');
        expect(await c2.hasClients('s1')).to.equal(false);
        expect(await c.hasClients('s10')).to.equal(true);
      });

      it('a put replaces the record; delete removes it', async () => {
        expect(await c.putClient(clientRec('s1', 'c1'), 10_000)).to.equal(true);
        const updated = clientRec('s1', 'c1', {
          username: null,
          lastAccess: '2024-01-01T00:09:00.000Z',
          bytesServed: 1_000_000,
          segmentsServed: 42,
        });
        expect(await c2.putClient(updated, 10_000)).to.equal(true);
        expect(await c.listClients('s1')).to.deep.equal([updated]);

        await c.deleteClient('s1', 'c1');
        await c.deleteClient('s1', 'c1'); // twice is fine
        expect(await c2.listClients('s1')).to.deep.equal([]);
        expect(await c2.listClients()).to.deep.equal([]);
      });

      it('onlyIfAbsent writes only when no live record exists', async () => {
        const first = clientRec('s1', 'c1', { workerId: 'w-1' });
        const second = clientRec('s1', 'c1', { workerId: 'w-2' });
        expect(await c.putClient(first, 300, true)).to.equal(true);
        expect(await c2.putClient(second, 10_000, true)).to.equal(false);
        expect(await c.listClients('s1')).to.deep.equal([first]);
        await sleep(500); // expired: absent again
        expect(await c2.putClient(second, 10_000, true)).to.equal(true);
        expect(await c.listClients('s1')).to.deep.equal([second]);
      });
    });

    describe('workers', () => {
      it('put, list and remove worker records', async () => {
        const w1 = workerRec('w-1');
        const w2 = workerRec('w-2', { relay: null, sources: [], viewers: 0 });
        await c.putWorker(w1);
        await c2.putWorker(w2);
        const sort = byId<WorkerRecord>((w) => w.workerId);
        expect((await c.listWorkers()).sort(sort)).to.deep.equal([w1, w2]);

        const w1b = workerRec('w-1', {
          lastSeen: '2024-01-01T00:10:00.000Z',
          sources: ['live:abc:0', 'hls:def:1'],
          relays: { receiving: 0, serving: 3 },
        });
        await c.putWorker(w1b);
        expect((await c2.listWorkers()).sort(sort)).to.deep.equal([w1b, w2]);

        await c2.removeWorker('w-1');
        expect(await c.listWorkers()).to.deep.equal([w2]);
      });
    });

    describe('values', () => {
      it('getOrSetValue gives everyone the first value', async () => {
        let created = 0;
        const first = await c.getOrSetValue('secret', () => `v${++created}`);
        expect(first).to.equal('v1');
        expect(await c2.getOrSetValue('secret', () => `v${++created}`)).to.equal('v1');
        expect(created).to.equal(1);

        const racing = await Promise.all(
          [c, c2, c, c2].map((x, i) => x.getOrSetValue('raced', () => `r${i}`)),
        );
        expect(new Set(racing).size).to.equal(1);
      });

      it('setValue with onlyIfAbsent lets exactly one writer win; deleteValue is true once', async () => {
        const won = await Promise.all([c, c2, c, c2].map((x, i) => x.setValue('flag', `w${i}`, { onlyIfAbsent: true })));
        expect(won.filter(Boolean)).to.have.length(1);
        expect(await c2.getValue('flag')).to.equal(`w${won.indexOf(true)}`);
        await c.setValue('flag', 'over'); // without NX it overwrites
        expect(await c2.getValue('flag')).to.equal('over');
        const deleted = await Promise.all([c.deleteValue('flag'), c2.deleteValue('flag')]);
        expect(deleted.filter(Boolean)).to.have.length(1);
        expect(await c.getValue('flag')).to.equal(null);
        expect(await c.getValue('never')).to.equal(null);
      });

      it('setValue with a TTL expires', async () => {
        expect(await c.setValue('brief', 'x', { ttlMs: 150, onlyIfAbsent: true })).to.equal(true);
        expect(await c2.getValue('brief')).to.equal('x');
        await sleep(300);
        expect(await c2.getValue('brief')).to.equal(null);
        expect(await c2.setValue('brief', 'y', { ttlMs: 150, onlyIfAbsent: true })).to.equal(true);
      });
    });

    describe('webhooks', () => {
      it('put replaces by URL, list shows every worker the same, delete is true once', async () => {
        const hook = {
          url: 'http://sink.test/hook', events: ['stream_started'], headers: { 'X-Key': 'k' },
          timeout: 5, retryAttempts: 2, createdAt: '2024-01-01T00:00:00.000Z',
        };
        await c.putWebhook(hook);
        await c2.putWebhook({ ...hook, events: [], timeout: 10 });
        await c.putWebhook({ ...hook, url: 'http://sink.test/other', createdAt: '2024-01-02T00:00:00.000Z' });
        const listed = await c2.listWebhooks();
        expect(listed.map((h) => h.url)).to.deep.equal(['http://sink.test/hook', 'http://sink.test/other']);
        expect(listed[0]).to.deep.equal({ ...hook, events: [], timeout: 10 });
        expect(await c.deleteWebhook('http://sink.test/hook')).to.equal(true);
        expect(await c2.deleteWebhook('http://sink.test/hook')).to.equal(false);
        expect((await c.listWebhooks()).map((h) => h.url)).to.deep.equal(['http://sink.test/other']);
      });
    });

    describe('events', () => {
      it('delivers a published event to every subscriber', async () => {
        const event: CoordinatorEvent = { type: 'test:hello', streamId: 's1', data: { n: 1, ok: true } };
        const onC2 = nextEvent(c2, (e) => e.type === 'test:hello');
        const onC = nextEvent(c, (e) => e.type === 'test:hello');
        await c.publish(event);
        expect(await onC2).to.deep.equal(event);
        expect(await onC).to.deep.equal(event);
      });

      it('stops delivering after unsubscribe', async () => {
        const seen: CoordinatorEvent[] = [];
        const off = c2.subscribe((e) => seen.push(e));
        const one = nextEvent(c2, (e) => e.type === 'test:one');
        await c.publish({ type: 'test:one' });
        await one;
        off();
        const marker = nextEvent(c2, (e) => e.type === 'test:marker');
        await c.publish({ type: 'test:two' });
        await c.publish({ type: 'test:marker' });
        await marker; // events arrive in order: 'test:two' came (and was ignored) before it
        expect(seen.map((e) => e.type)).to.deep.equal(['test:one']);
      });
    });

    it('ping answers true', async () => {
      expect(await c.ping()).to.equal(true);
      expect(await c2.ping()).to.equal(true);
    });
  });
}
