// The host's front door: the cluster primary accepts every connection on PORT and passes it to
// a worker (its descriptor, over IPC), round robin over the workers free to take one, one in
// flight per worker: the next goes once the worker said it took the last. That is what Node's
// own round-robin scheduler does, and it is the host's intake: a worker takes one connection a
// loop turn (Node passes one descriptor at a time and waits for the worker's ack). Past the
// knee a turn is long and intake falls to a few dozen connections a second; Node's scheduler
// queued the rest unanswered (1,345 of 1,400 new players had no answer within 10 s,
// BENCHMARKS.md "Overload"), though every worker was refusing new viewers.
//
// So while no worker takes new viewers — each worker reports (src/worker-load.ts) its admission refuses them
// (behind its sources, lagging viewers, MAX_VIEWERS_PER_WORKER) or has sat on the connection it
// was sent for ADMISSION_QUEUE_MS (its loop stalled), or none runs, or connections have waited
// here that long with no worker taking one, or a backlog waited that long while the workers took
// fewer than ADMISSION_MIN_INTAKE a second each (their intake collapsed: a host past its knee, see
// lookAtIntake) — this process, whose loop stays free, reads each new or waiting connection's
// request line and answers a new viewer (`GET /stream/…`, what a worker's admission judges)
// `503 OVERLOADED` + `Retry-After` itself, at once. Anything else (the API, HLS requests of
// players already watching, /health, /metrics) waits for a worker as before, its request line
// sent along.
//
// Not by how long connections wait while workers take them at a healthy rate: a healthy host opening 4,800
// viewers at 1,000 a second made the last wait 14 s here and played every one at rate, and an
// estimate of the wait from the gaps between takes refused 65 of a healthy burst of 600 (one
// slow turn makes a gap twenty times the rest). A host that keeps up but takes players in slower than they come still makes
// the last ones wait: Node passes one descriptor a worker loop turn. Where a player must get an
// answer within seconds anyway, ADMISSION_MAX_WAIT_MS (opt-in) refuses a new viewer that waited
// that long here, at the price of the tail of a healthy host's largest join storms.
//
// A connection stays open here until its worker said it took it: a worker that exits first
// leaves it to the next worker, not lost (Node's scheduler closed such connections).
import net from 'node:net';
import type { Worker } from 'node:cluster';
import { workerLoad } from '../worker-load.js';

/** The messages between the primary and a worker about new connections. */
export type ConnectionMessage =
  /** primary → worker, with the socket as the handle: serve it; `head`: bytes read from it here (base64). */
  | { t: 'conn'; head?: string }
  /** worker → primary: it took the last one (whatever became of it). */
  | { t: 'conn:taken' };

export interface ConnectionDispatcherOptions {
  /** ms connections may wait here with no worker taking any before workers count as stalled; 0 = never (ADMISSION_QUEUE_MS). */
  queueMs: number;
  /**
   * ms a new viewer's connection may wait here for a worker; past it the primary answers it 503
   * itself even while workers take connections (they take them slower than players come); 0 =
   * no limit (ADMISSION_MAX_WAIT_MS).
   */
  maxWaitMs?: number;
  /** Seconds a refused player is told to wait (Retry-After). */
  retryAfterS: number;
  /** ROOT_PATH ('' for none): new viewers are `GET /stream/…` and `GET {rootPath}/stream/…`. */
  rootPath: string;
  /**
   * Connections a second each worker takes at least while a backlog waits, unless its intake
   * has collapsed (ADMISSION_MIN_INTAKE; 0 or absent = no such rule). A worker past its knee runs
   * loop turns of hundreds of ms and takes one connection a turn. Measured (bench, proxy on one
   * core): healthy join storms were taken at 167-213 a second a worker, a host past its knee at
   * 3-25; a slower host's healthy rate is lower (set it below that).
   */
  minIntakePerS?: number;
}

interface Waiting {
  socket: net.Socket;
  /** Bytes read from it here (its request line), passed on with it. */
  head: Buffer | null;
  /** When it arrived (performance.now(), ms). */
  since: number;
}

interface Taker {
  worker: Worker;
  /** The connection sent and not yet taken. */
  busy: Waiting | null;
  /** When it was sent (performance.now(), ms). */
  sentAt: number;
  /** Stopping (shutdown, rolling restart): sent nothing more. */
  leaving: boolean;
  /** Connections it took so far. */
  takes: number;
}

/** Waiting connections at most: past it a new one is refused at once (the primary's memory is bounded). */
const MAX_WAITING = 8192;
/** Bytes of a refused request read and dropped at most (its head; a body is not waited for). */
const MAX_DROPPED = 64 * 1024;
/** A request line read here longer than this is passed on as it is. */
const MAX_LINE = 8192;
/** How long the request line, or a refused request's head, may take to arrive. */
const READ_TIMEOUT_MS = 5000;
const SHUTTING_DOWN = 'shutting down';
/** How often waiting connections are looked at while none is taken. */
const CHECK_MS = 250;
/** Waiting connections that make a backlog (a storm, not one slow request). */
const MIN_BACKLOG = 10;


export class ConnectionDispatcher {
  // noDelay: set on the kernel socket, so the worker's copy has it too (an http.Server sets it
  // on the connections it accepts itself; players get each chunk without Nagle's delay).
  private readonly server = net.createServer({ pauseOnConnect: true, noDelay: true }, (socket) => this.onConnection(socket));
  private readonly takers: Taker[] = [];
  /** Whether each worker's last load report said it refuses new viewers (kept from before it takes connections). */
  private readonly refusing = new WeakMap<Worker, boolean>();
  private readonly queue: Waiting[] = [];
  /** Connections whose request line is being read here. */
  private reading = 0;
  private next = 0;
  private timer: NodeJS.Timeout | null = null;
  private listenOnce: Promise<number> | null = null;
  private closed = false;
  /** Request-line starts of a new viewer: the routes are served at / and at ROOT_PATH. */
  private readonly viewerLines: string[];
  /** When a worker last took a connection (performance.now(), ms). */
  private lastTakeAt = 0;
  /** The takes of each worker at each look while a backlog waited without a break, oldest first (at most queueMs of it). */
  private readonly intake: { at: number; takes: Map<Taker, number> }[] = [];
  /** New viewers are refused here until then (performance.now(), ms): the intake collapsed. */
  private collapsedUntil = 0;
  /** The last 503 answered (its reason and the second of its Date), reused while both are the same. */
  private answer: { why: string; second: number; bytes: Buffer } | null = null;
  /** Connections answered 503 here so far. */
  refused = 0;

  constructor(private readonly opts: ConnectionDispatcherOptions) {
    this.viewerLines = ['GET /stream/', ...(opts.rootPath ? [`GET ${opts.rootPath}/stream/`] : [])];
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

  /** Connections waiting for a worker now (sent and not yet taken, and being read, included). */
  get waiting(): number {
    return this.queue.length + this.reading + this.takers.filter((t) => t.busy).length;
  }

  /** `worker` takes connections from now on (it listens: `worker:ready`). */
  add(worker: Worker): void {
    if (this.closed || this.takers.some((t) => t.worker === worker)) return;
    this.takers.push({ worker, busy: null, sentAt: 0, leaving: false, takes: 0 });
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
    const load = workerLoad(msg);
    if (load) {
      this.refusing.set(worker, load.overloaded);
      this.pump();
      return true;
    }
    if ((msg as ConnectionMessage | null)?.t !== 'conn:taken') return false;
    this.lastTakeAt = performance.now();
    const t = this.takers.find((x) => x.worker === worker);
    if (t) t.takes++;
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
    for (const w of this.queue.splice(0)) this.refuse(w, SHUTTING_DOWN);
  }

  private onConnection(socket: net.Socket): void {
    // A reset while it waits here must not be an unhandled 'error'.
    socket.on('error', () => socket.destroy());
    const w: Waiting = { socket, head: null, since: performance.now() };
    if (this.closed) return void this.refuse(w, SHUTTING_DOWN);
    if (this.queue.length >= MAX_WAITING) return void this.refuse(w, `${MAX_WAITING} connections are already waiting for a worker`);
    this.queue.push(w);
    this.pump();
  }

  /**
   * Why no worker takes new viewers now (each refuses them, none runs, or they stalled), or
   * null while one does; `judged`: a connection waiting outside the queue (its line being read).
   */
  private noViewerTaken(judged?: Waiting): string | null {
    if (!this.listenOnce) return null;
    const { queueMs } = this.opts;
    const now = performance.now();
    let usable = 0;
    let full = 0;
    for (const t of this.takers) {
      if (t.leaving || !t.worker.isConnected()) continue;
      usable++;
      // A worker sitting on its connection that long takes nothing else either.
      if (this.refusing.get(t.worker) === true || (queueMs > 0 && t.busy && now - t.sentAt >= queueMs)) full++;
    }
    if (usable === 0) return 'no worker is running';
    if (full === usable) return 'every worker is at its limit or stalled';
    // The queue's head waited longest: connections go in at its back, and back in at their arrival's place.
    const oldest = Math.min(judged?.since ?? now, this.queue[0]?.since ?? now);
    if (queueMs > 0 && now - oldest >= queueMs && now - this.lastTakeAt >= queueMs) {
      return `no worker took a connection for ${queueMs} ms`;
    }
    if (now < this.collapsedUntil) return `its workers take in fewer than ${this.opts.minIntakePerS} connections a second each`;
    return null;
  }

  /**
   * One look at the intake (each CHECK_MS while connections wait). A backlog of MIN_BACKLOG or
   * more that waited a whole `queueMs` while every worker taking new viewers took fewer than
   * `minIntakePerS` connections a second is a host past its knee, not a storm a healthy host
   * works through: new viewers are refused here for the next `queueMs` (then their intake is
   * measured again). Each worker on its own: one healthy worker beside collapsed ones still
   * takes viewers; a worker reporting that it refuses them answers them itself.
   */
  private lookAtIntake(): void {
    const { queueMs } = this.opts;
    const floor = this.opts.minIntakePerS ?? 0;
    const now = performance.now();
    const i = this.intake;
    // A break in the backlog, or in the looks (none while nothing waited), starts it anew.
    if (queueMs <= 0 || floor <= 0 || this.queue.length < MIN_BACKLOG) return void (i.length = 0);
    if (i.length > 0 && now - i[i.length - 1]!.at > 2 * CHECK_MS) i.length = 0;
    i.push({ at: now, takes: new Map(this.takers.map((t) => [t, t.takes])) });
    while (i.length > 1 && now - i[1]!.at >= queueMs) i.shift();
    const first = i[0]!;
    const spanS = (now - first.at) / 1000;
    if (spanS * 1000 < queueMs - CHECK_MS / 2) return;
    const judged = this.takers.filter((t) => !t.leaving && t.worker.isConnected() && this.refusing.get(t.worker) !== true);
    // A worker that joined within the window has no rate yet: it is judged at the next window.
    if (judged.length === 0 || judged.some((t) => !first.takes.has(t))) return;
    if (judged.every((t) => (t.takes - first.takes.get(t)!) / spanS < floor)) {
      this.collapsedUntil = now + queueMs;
      i.length = 0;
    }
  }

  private pump(): void {
    // Sorted out before any is sent: a worker free to take a connection may still refuse viewers.
    const why = this.queue.length > 0 ? this.noViewerTaken() : null;
    if (why) this.sortOut(() => true, why);
    // The queue's head waited longest: only then is it worth a look along the queue.
    else if (this.queue.length > 0 && this.waitedTooLong(this.queue[0]!)) this.sortOut((w) => this.waitedTooLong(w) !== null, null);
    while (this.queue.length > 0) {
      const t = this.freeTaker();
      if (!t) break;
      const w = this.queue.shift()!;
      if (!w.socket.destroyed) this.send(t, w);
    }
    this.arm();
  }

  /**
   * Reads the request line of each waiting connection that `which` picks and that was not read
   * yet (new viewers are refused, the rest wait again); one already read that is a new viewer
   * and may no longer wait (`why`: no worker takes viewers now; or its own wait) is refused at once.
   */
  private sortOut(which: (w: Waiting) => boolean, why: string | null): void {
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const w = this.queue[i]!;
      if (!which(w)) continue;
      if (!w.head) {
        this.queue.splice(i, 1);
        void this.readLine(w);
        continue;
      }
      const reason = why ?? this.waitedTooLong(w);
      if (reason && this.isViewer(w.head)) {
        this.queue.splice(i, 1);
        this.refuse(w, reason);
      }
    }
  }

  /** Why `w` may not wait any longer (ADMISSION_MAX_WAIT_MS), or null. */
  private waitedTooLong(w: Waiting): string | null {
    const { maxWaitMs } = this.opts;
    if (!maxWaitMs) return null;
    const waited = performance.now() - w.since;
    return waited >= maxWaitMs ? `it waited over ${maxWaitMs} ms for a worker` : null;
  }

  private isViewer(head: Buffer): boolean {
    const line = head.toString('latin1');
    return this.viewerLines.some((v) => line.startsWith(v));
  }

  private async readLine(w: Waiting): Promise<void> {
    this.reading++;
    const head = await requestLine(w.socket);
    this.reading--;
    if (w.socket.destroyed) return;
    w.head = head;
    // The host stopped while it was read: nothing will take it (close() answered the queue).
    if (this.closed) return void this.refuse(w, SHUTTING_DOWN);
    const why = this.noViewerTaken(w) ?? this.waitedTooLong(w);
    if (why && this.isViewer(head)) return void this.refuse(w, why);
    // Not a new viewer, or a worker takes them again: it waits for a worker, in its arrival's
    // place (reads end in any order; the rules read the queue's head as the longest waiting).
    const at = this.queue.findIndex((x) => x.since > w.since);
    this.queue.splice(at < 0 ? this.queue.length : at, 0, w);
    this.pump();
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
    const msg: ConnectionMessage = w.head ? { t: 'conn', head: w.head.toString('base64') } : { t: 'conn' };
    try {
      // keepOpen: this process keeps its copy until the worker took it (see the top comment).
      t.worker.send(msg, w.socket, { keepOpen: true }, (err) => {
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

  /** While connections wait and no worker takes them: looks again every CHECK_MS (a worker's stall shows only with time). */
  private arm(): void {
    if (this.timer || this.queue.length === 0 || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.lookAtIntake();
      this.pump();
    }, CHECK_MS);
    this.timer.unref();
  }

  /**
   * Answers 503 on the raw socket: a fixed response written at once, then the socket ends and
   * what the client still sends is read and dropped (closing with unread bytes would reset the
   * connection and lose the answer) until it closes or READ_TIMEOUT_MS passed. No HTTP parser:
   * past the knee this is the host's cheapest answer (an http.Server per refusal cost the
   * primary 0.5 ms of CPU, this 0.35: BENCHMARKS.md).
   */
  private refuse(w: Waiting, why: string): void {
    const { socket } = w;
    if (socket.destroyed) return;
    this.refused++;
    // Read for READ_TIMEOUT_MS at most, and MAX_DROPPED bytes: a client trickling bytes must not hold it.
    let dropped = 0;
    socket.on('data', (b: Buffer) => {
      dropped += b.length;
      if (dropped > MAX_DROPPED) socket.destroy();
    });
    const deadline = setTimeout(() => socket.destroy(), READ_TIMEOUT_MS);
    deadline.unref();
    socket.once('close', () => clearTimeout(deadline));
    // Past the knee thousands a second get the same answer: it is made once a second and reason.
    const second = Math.floor(Date.now() / 1000);
    if (this.answer?.why !== why || this.answer.second !== second) this.answer = { why, second, bytes: refusal(why, this.opts.retryAfterS) };
    socket.end(this.answer.bytes);
    socket.resume();
  }
}

/**
 * The 503 the primary answers with (API.md §1): SHUTTING_DOWN while the host stops (any
 * request), OVERLOADED for a new viewer otherwise; `Connection: close` (one answer a connection).
 */
function refusal(why: string, retryAfterS: number): Buffer {
  const body = JSON.stringify(why === SHUTTING_DOWN
    ? { detail: 'The proxy is shutting down; try again shortly', code: 'SHUTTING_DOWN' }
    : { detail: `This server cannot take another viewer now (${why}); try again shortly`, code: 'OVERLOADED' });
  return Buffer.from('HTTP/1.1 503 Service Unavailable\r\n' +
    'Content-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    `Retry-After: ${retryAfterS}\r\n` +
    `Date: ${new Date().toUTCString()}\r\n` +
    'Connection: close\r\n\r\n' + body);
}

/**
 * Reads from a paused socket up to the end of its first line (at most MAX_LINE bytes, or what
 * came within READ_TIMEOUT_MS) and pauses it again; what it read is returned, to be passed on.
 */
function requestLine(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', done);
      socket.pause();
      resolve(Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      size += chunk.length;
      if (chunk.includes(10) || size >= MAX_LINE) done();
    };
    const timer = setTimeout(done, READ_TIMEOUT_MS);
    socket.on('data', onData);
    socket.once('close', done);
    socket.resume();
  });
}
