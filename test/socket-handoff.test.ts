// The viewer hand-off's parts that need no cluster: the request head a moved connection is
// replayed from, and the load rule (test/viewer-handoff.test.ts runs the real thing).
import http from 'node:http';
import net from 'node:net';
import { expect } from 'chai';
import { requestHead, SLACK, SocketHandoff } from '../src/http/socket-handoff.js';
import { createLogger } from '../src/logger.js';

describe('viewer hand-off parts', () => {
  it('requestHead: an HTTP parser reads back the same request line and raw headers, byte for byte', async () => {
    const seen: Array<Pick<http.IncomingMessage, 'method' | 'url' | 'httpVersion' | 'rawHeaders'>> = [];
    const server = http.createServer((req, res) => {
      seen.push({ method: req.method, url: req.url, httpVersion: req.httpVersion, rawHeaders: [...req.rawHeaders] });
      res.end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const send = (bytes: Buffer): Promise<void> => new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => s.end(bytes));
      s.on('data', () => s.destroy());
      s.on('close', () => resolve());
      s.on('error', reject);
    });
    try {
      // Repeated headers, odd case, latin1 bytes, a query with escapes, HTTP/1.0.
      const original = Buffer.concat([
        Buffer.from('GET /stream/abc?username=j%C3%B6rg&x=1 HTTP/1.0\r\nHost: a\r\nX-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2\r\nUser-Agent: VLC/3.0\r\nX-Name: ', 'latin1'),
        Buffer.from([0xe9, 0x74, 0xe9]),
        Buffer.from('\r\n\r\n', 'latin1'),
      ]);
      await send(original);
      await send(requestHead(seen[0]!));
      expect(seen).to.have.length(2);
      expect(seen[1]).to.deep.equal(seen[0]);
      expect(requestHead(seen[0]!).equals(original)).to.equal(true);
    } finally {
      server.close();
    }
  });

  describe('load rule', () => {
    let h: SocketHandoff;
    beforeEach(() => {
      h = new SocketHandoff({
        workerId: 'w-1', logger: createLogger({ level: 'error', format: 'json', workerId: 't' }),
        send: () => true,
      });
    });
    afterEach(() => h.close());
    const peers = (list: Array<{ workerId: string; viewers: number; overloaded?: boolean }>): void =>
      void h.onMessage({ t: 'handoff:peers', peers: list.map((p) => ({ overloaded: false, ...p })) }, undefined);

    it('moves nothing before it knows a peer', () => {
      expect(h.mayMove({ method: 'GET', socket: new net.Socket(), headers: {} })).to.equal(false);
      expect(h.shouldMove('w-2', 0)).to.equal(false);
    });

    it('moves to a peer with room: not refusing viewers, at most SLACK more viewers than here', () => {
      peers([{ workerId: 'w-1', viewers: 0 }, { workerId: 'w-2', viewers: 100 }, { workerId: 'w-3', viewers: 0, overloaded: true }]);
      expect(h.mayMove({ method: 'GET', socket: new net.Socket(), headers: {} })).to.equal(true);
      expect(h.mayMove({ method: 'HEAD', socket: new net.Socket(), headers: {} })).to.equal(false);
      expect(h.mayMove({ method: 'GET', socket: new net.Socket(), headers: { 'content-length': '5' } }), 'a body would not move').to.equal(false);
      expect(h.mayMove({ method: 'GET', socket: new net.Socket(), headers: { 'transfer-encoding': 'chunked' } })).to.equal(false);
      expect(h.shouldMove('w-2', 100 - SLACK)).to.equal(true);
      expect(h.shouldMove('w-2', 100 - SLACK - 1)).to.equal(false);
      expect(h.shouldMove('w-3', 1000), 'a peer refusing viewers').to.equal(false);
      expect(h.shouldMove('w-1', 1000), 'itself is no peer').to.equal(false);
      expect(h.shouldMove('w-9', 1000), 'unknown').to.equal(false);
    });

    it('below spreadFrom the owner takes every viewer, whatever this worker holds', () => {
      const spread = new SocketHandoff({ workerId: 'w-1', send: () => true, logger: createLogger({ level: 'error', format: 'json', workerId: 't' }), spreadFrom: 400 });
      try {
        spread.onMessage({ t: 'handoff:peers', peers: [{ workerId: 'w-2', viewers: 399, overloaded: false }, { workerId: 'w-3', viewers: 400, overloaded: false }, { workerId: 'w-4', viewers: 10, overloaded: true }] }, undefined);
        expect(spread.shouldMove('w-2', 0)).to.equal(true);
        expect(spread.shouldMove('w-3', 0), 'at spreadFrom: the slack rule').to.equal(false);
        expect(spread.shouldMove('w-3', 400 - SLACK)).to.equal(true);
        expect(spread.shouldMove('w-4', 0), 'a peer refusing viewers').to.equal(false);
      } finally {
        spread.close();
      }
    });

    it('counts moves both ways until the next report: a burst of moves to each other is no imbalance', () => {
      peers([{ workerId: 'w-2', viewers: 0 }]);
      const socket = (): net.Socket => new net.Socket();
      const fakeServer = { listening: true, emit: () => true } as unknown as http.Server;
      h.serveOn(fakeServer);
      // SLACK + 1 moves to w-2 with none here: w-2 counts as SLACK + 1 ahead.
      for (let i = 0; i <= SLACK; i++) expect(h.moveTo({ socket: socket(), method: 'GET', url: '/stream/x', httpVersion: '1.1', rawHeaders: [] } as never, 'w-2')).to.equal(true);
      expect(h.shouldMove('w-2', 0)).to.equal(false);
      // w-2 moved two to us meanwhile: it is within SLACK again.
      for (let i = 0; i < 2; i++) h.onMessage({ t: 'handoff:socket', to: 'w-1', from: 'w-2', head: '' }, socket());
      expect(h.shouldMove('w-2', 0)).to.equal(true);
      // Its next report counts everything: the estimate starts over from it.
      peers([{ workerId: 'w-2', viewers: 5 }]);
      expect(h.shouldMove('w-2', 0)).to.equal(true);
    });

    it('a connection handed in (or settled) never moves again', () => {
      peers([{ workerId: 'w-2', viewers: 0 }]);
      const s = new net.Socket();
      h.serveOn({ listening: true, emit: () => true } as unknown as http.Server);
      h.onMessage({ t: 'handoff:socket', to: 'w-1', from: 'w-2', head: '' }, s);
      expect(h.mayMove({ method: 'GET', socket: s, headers: {} })).to.equal(false);
      const t = new net.Socket();
      h.settle(t);
      expect(h.mayMove({ method: 'GET', socket: t, headers: {} })).to.equal(false);
    });
  });
});
