// The host's front door: the cluster primary accepts every connection on PORT and passes it to
// a worker (its descriptor, over IPC), round robin over the workers free to take one, one in
// flight per worker: the next goes once the worker said it took the last. That is what Node's
// own round-robin scheduler does, with one rule Node's cannot have: while every worker has sat
// on the connection it was sent for ADMISSION_QUEUE_MS or more (its loop stalled), connections
// are answered here, `503 OVERLOADED` + `Retry-After`, by this process, whose loop stays free.
// Past the host's knee a worker's loop runs turns of seconds and takes one connection a turn;
// Node's scheduler queued the rest unanswered (1,345 of 1,400 new players had no answer within
// 10 s, BENCHMARKS.md "Overload"), so the worker's own admission rule never saw them.
//
// Not the time a connection waited here: a healthy worker also takes one connection a loop
// turn, so a burst of players (240 at once in a test) waits its turn for a second or more
// while each worker takes one every few ms; refusing by wait refused a fifth of them. A
// connection that waited WAIT_FACTOR × ADMISSION_QUEUE_MS is refused all the same (players
// give up about then).
//
// A connection stays open here until its worker said it took it: a worker that exits first
// leaves it to the next worker, not lost (Node's scheduler closed such connections).
import http from 'node:http';
import net from 'node:net';
import type { Worker } from 'node:cluster';

/** The messages between the primary and a worker about new connections. */
export type ConnectionMessage =
  /** primary → worker, with the socket as the handle: serve it. */
  | { t: 'conn' }
  /** worker → primary: it took the last one (whatever became of it). */
  | { t: 'conn:taken' };

export interface ConnectionDispatcherOptions {
  /** ms a connection may wait for a worker before it is answered 503 here; 0 = it waits (ADMISSION_QUEUE_MS). */
  queueMs: number;
  /** Seconds a refused player is told to wait (Retry-After). */
  retryAfterS: number;
}

interface Waiting {
  socket: net.Socket;
  /** When it was accepted (performance.now(), ms). */
  at: number;
}

interface Taker {
  worker: Worker;
  /** The connection sent and not yet taken. */
  busy: Waiting | null;
  /** When it was sent (performance.now(), ms). */
  sentAt: number;
  /** Stopping (shutdown, rolling restart): sent nothing more. */
  leaving: boolean;
}

/** Waiting connections at most: past it a new one is refused at once (the primary's memory is bounded). */
const MAX_WAITING = 8192;
/** A connection that waited this many ADMISSION_QUEUE_MS here is refused even while workers take connections. */
const WAIT_FACTOR = 10;
/** The refusal's request head must arrive within this (a slow client holds no slot here). */
const REFUSE_TIMEOUT_MS = 5000;

export class ConnectionDispatcher {
  // noDelay: set on the kernel socket, so the worker's copy has it too (an http.Server sets it
  // on the connections it accepts itself; players get each chunk without Nagle's delay).
  private readonly server = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => this.onConnection(socket));
  /** Reads a refused connection's request (closing one with unread bytes would reset it) and answers 503. */
  private readonly refuser: http.Server;
  /** Why each refused connection is refused (its 503's detail). */
  private readonly reasons = new WeakMap<net.Socket, string>();
  private readonly takers: Taker[] = [];
  private readonly queue: Waiting[] = [];
  private next = 0;
  private timer: NodeJS.Timeout | null = null;
  private listenOnce: Promise<number> | null = null;
  private closed = false;
  /** Connections answered 503 here so far. */
  refused = 0;

  constructor(private readonly opts: ConnectionDispatcherOptions) {
    this.refuser = http.createServer({ headersTimeout: REFUSE_TIMEOUT_MS, requestTimeout: REFUSE_TIMEOUT_MS, keepAliveTimeout: 0 }, (req, res) => {
      const why = this.reasons.get(req.socket) ?? 'the server is busy';
      const body = JSON.stringify({ detail: `This server cannot take another connection now (${why}); try again shortly`, code: 'OVERLOADED' });
      res.writeHead(503, {
        'Content-Type': 'application/json; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
        'Retry-After': String(this.opts.retryAfterS),
        Connection: 'close',
      });
      res.end(body);
    });
    // Node starts its header/request timeouts on 'listening'; this server never listens.
    this.refuser.emit('listening');
    this.server.on('error', () => undefined); // accept errors (EMFILE) are retried by libuv
  }

  /** Listens on host:port (once; later calls get the same port). Rejects as net.Server.listen does (EADDRINUSE). */
  listen(host: string, port: number): Promise<number> {
    this.listenOnce ??= new Promise((resolve, reject) => {
      this.server.once('error', reject);
      // A large backlog: a burst of players connecting at once waits in the kernel, not refused.
      this.server.listen({ host, port, backlog: 4096 }, () => {
        this.server.off('error', reject);
        const a = this.server.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });
    return this.listenOnce;
  }

  /** Connections waiting for a worker now (sent and not yet taken included). */
  get waiting(): number {
    return this.queue.length + this.takers.filter((t) => t.busy).length;
  }

  /** `worker` takes connections from now on (it listens: `worker:ready`). */
  add(worker: Worker): void {
    if (this.closed || this.takers.some((t) => t.worker === worker)) return;
    this.takers.push({ worker, busy: null, sentAt: 0, leaving: false });
    this.pump();
  }

  /** `worker` is sent nothing more (it stops); the connection it was sent is still its own. */
  leave(worker: Worker): void {
    const t = this.takers.find((x) => x.worker === worker);
    if (t) t.leaving = true;
    this.forgetIfDone(t);
  }

  /** `worker` exited: a connection it had not taken goes to the next worker. */
  exited(worker: Worker): void {
    const i = this.takers.findIndex((x) => x.worker === worker);
    if (i < 0) return;
    const [t] = this.takers.splice(i, 1);
    if (t!.busy && !t!.busy.socket.destroyed) this.queue.unshift(t!.busy);
    this.pump();
  }

  /** A message from `worker`: true if it was this dispatcher's. */
  onMessage(worker: Worker, msg: unknown): boolean {
    if ((msg as ConnectionMessage | null)?.t !== 'conn:taken') return false;
    const t = this.takers.find((x) => x.worker === worker);
    if (t?.busy) {
      // Closes this process's copy of the descriptor only: the worker holds its own.
      t.busy.socket.destroy();
      t.busy = null;
    }
    this.forgetIfDone(t);
    this.pump();
    return true;
  }

  /** Stops accepting; connections still waiting are answered 503 (the host is stopping). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    if (this.timer) clearTimeout(this.timer);
    for (const w of this.queue.splice(0)) this.refuse(w.socket, 'the server is shutting down');
    setTimeout(() => this.refuser.closeAllConnections(), REFUSE_TIMEOUT_MS).unref();
  }

  private onConnection(socket: net.Socket): void {
    // A reset while it waits here must not be an unhandled 'error'.
    socket.on('error', () => socket.destroy());
    if (this.closed) return void this.refuse(socket, 'the server is shutting down');
    if (this.queue.length >= MAX_WAITING) return void this.refuse(socket, `${MAX_WAITING} connections are already waiting for a worker`);
    const stalled = this.stalled();
    if (stalled) return void this.refuse(socket, stalled);
    this.queue.push({ socket, at: performance.now() });
    this.pump();
  }

  /** Why no worker takes connections now (every one sat on its last for queueMs), or null. */
  private stalled(): string | null {
    const { queueMs } = this.opts;
    if (queueMs <= 0 || !this.listenOnce) return null;
    const now = performance.now();
    let usable = 0;
    for (const t of this.takers) {
      if (t.leaving || !t.worker.isConnected()) continue;
      usable++;
      if (!t.busy || now - t.sentAt < queueMs) return null;
    }
    return usable === 0 ? 'no worker is running' : `every worker has been busy for ${queueMs} ms or more`;
  }

  private pump(): void {
    while (this.queue.length > 0) {
      const t = this.freeTaker();
      if (!t) break;
      const w = this.queue.shift()!;
      if (!w.socket.destroyed) this.send(t, w);
    }
    this.arm();
  }

  /** The next worker in turn that is free to take a connection. */
  private freeTaker(): Taker | null {
    const n = this.takers.length;
    for (let k = 0; k < n; k++) {
      const t = this.takers[(this.next + k) % n]!;
      if (!t.busy && !t.leaving && t.worker.isConnected()) {
        this.next = (this.next + k + 1) % n;
        return t;
      }
    }
    return null;
  }

  private send(t: Taker, w: Waiting): void {
    t.busy = w;
    t.sentAt = performance.now();
    const failed = (): void => {
      if (t.busy !== w) return;
      t.busy = null;
      t.leaving = true;
      if (!w.socket.destroyed) this.queue.unshift(w);
      this.pump();
    };
    try {
      // keepOpen: this process keeps its copy until the worker took it (see the top comment).
      t.worker.send({ t: 'conn' } satisfies ConnectionMessage, w.socket, { keepOpen: true }, (err) => {
        if (err) failed();
      });
    } catch {
      failed();
    }
  }

  /** A leaving worker with nothing in flight is forgotten. */
  private forgetIfDone(t: Taker | undefined): void {
    if (!t || !t.leaving || t.busy) return;
    this.takers.splice(this.takers.indexOf(t), 1);
  }

  /**
   * While connections wait: checks every quarter of queueMs whether the workers stalled
   * (then every waiting connection is refused) or the oldest waited WAIT_FACTOR × queueMs.
   */
  private arm(): void {
    const { queueMs } = this.opts;
    if (this.timer || queueMs <= 0 || this.queue.length === 0 || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const stalled = this.stalled();
      const limit = performance.now() - WAIT_FACTOR * queueMs;
      while (this.queue.length > 0 && (stalled || this.queue[0]!.at <= limit)) {
        this.refuse(this.queue.shift()!.socket, stalled ?? `no worker took it within ${WAIT_FACTOR * queueMs} ms`);
      }
      this.arm();
    }, Math.max(25, queueMs / 4));
    this.timer.unref();
  }

  private refuse(socket: net.Socket, why: string): void {
    if (socket.destroyed) return;
    this.refused++;
    this.reasons.set(socket, why);
    this.refuser.emit('connection', socket);
    socket.resume();
  }
}
