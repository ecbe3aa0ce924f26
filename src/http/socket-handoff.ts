// Viewer hand-off between the workers of one host. A player's connection lands on whichever
// worker the cluster primary gives it (round robin), not on the worker that owns the stream's
// source; that worker would then run a relay (one more socket write and read for every byte of
// the stream) to feed a viewer or two. For a live TS viewer whose source another worker of this
// host owns, the request is moved instead: this worker sends the socket itself (its file
// descriptor, through the primary, Node's IPC handle passing) with the request head it read,
// and the owner replays that head into its own HTTP server, so the viewer is served by the
// express app there exactly as if it had connected there (auth, admission, client records).
// A handed-in connection is never handed on: at most one move per connection.
//
// When to move is a load rule, so one hot channel still spreads over every core: the owner
// must not be refusing viewers (admission) and must hold fewer than `spreadFrom` viewers or at
// most SLACK more than this worker (counting the ones handed either way since its last
// report). Past that, the viewer stays and a relay feeds it (and the next ones of that stream
// here). Below `spreadFrom` spreading buys no capacity and the relay costs as much CPU as a
// few viewers' writes: at 50 viewers of one channel a relay for the 2 left on the other
// worker doubled that worker's CPU and cost 1.7× the floor per GB (BENCHMARKS.md). Not the owner's
// event-loop utilisation: a burst of joins keeps both workers ~90 % busy for a second without
// either being short of room, and a rule on it kept a quarter of the relays it should save.
import type { Socket } from 'node:net';
import type http from 'node:http';
import type { Request } from 'express';
import type { Logger } from '../logger.js';
import type { WorkerLoad } from '../worker-load.js';

/**
 * The messages of the hand-off (worker ⇄ primary ⇄ worker); each worker's load reaches the
 * primary as its `worker:load` report (src/worker-load.ts), answered with `handoff:peers`.
 */
export type HandoffMessage =
  | { t: 'handoff:peers'; peers: WorkerLoad[] }
  /** `head`: the request line and headers as read (latin1, base64); `from`: the sender. */
  | { t: 'handoff:socket'; to: string; from: string; head: string };

export interface SocketHandoffOptions {
  workerId: string;
  /** process.send of a cluster worker. */
  send: (msg: HandoffMessage, handle?: Socket, options?: { keepOpen: boolean }, cb?: (err: Error | null) => void) => boolean;
  logger: Logger;
  /** A connection moved out of or into this worker (metrics). */
  onMove?: (direction: 'out' | 'in') => void;
  /** Viewers an owner may hold whatever this worker holds (VIEWER_HANDOFF_SPREAD_FROM); default 0. */
  spreadFrom?: number;
}

/** How many more viewers than this worker the owner may hold and still be handed one. */
export const SLACK = 64;
/** A peer that has not reported for this long is not handed anything. */
const STALE_MS = 3000;

/** The request line and headers of `req`, as bytes an HTTP parser reads back to the same request. */
export function requestHead(req: Pick<http.IncomingMessage, 'method' | 'url' | 'httpVersion' | 'rawHeaders'> & { originalUrl?: string }): Buffer {
  // express rewrites req.url under a mount (ROOT_PATH); originalUrl is the request line's.
  let head = `${req.method} ${req.originalUrl ?? req.url} HTTP/${req.httpVersion}\r\n`;
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) head += `${raw[i]}: ${raw[i + 1]}\r\n`;
  // Node decodes header bytes as latin1: encoding them back so gives the bytes that arrived.
  return Buffer.from(`${head}\r\n`, 'latin1');
}

export class SocketHandoff {
  /** Connections that never move (again): handed in, or a move failed. */
  private readonly settled = new WeakSet<Socket>();
  private peers = new Map<string, WorkerLoad & { at: number }>();
  /**
   * Viewers handed to (+) and from (−) each peer since its last report: its report does not
   * count them yet. Both ways: in a burst both workers hand viewers to each other, and counting
   * only ours would take a balanced peer for a full one.
   */
  private readonly movedSince = new Map<string, number>();
  private server: http.Server | null = null;
  /** Closed: the worker stops (nothing moves out any more). */
  private closed = false;

  constructor(private readonly opts: SocketHandoffOptions) {}

  /** The server handed-in connections are replayed into. */
  serveOn(server: http.Server): void {
    this.server = server;
  }

  /**
   * Whether the request's connection may move: a GET, another worker of this host reported
   * its load (with one worker: never), and the connection is not settled here (handed in, or
   * a move of it failed).
   */
  mayMove(req: Pick<Request, 'method' | 'socket' | 'headers'>): boolean {
    // A body (or a pipelined request) read past the head would not move with it.
    const body = req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
    return this.peers.size > 0 && req.method === 'GET' && !body && !this.settled.has(req.socket);
  }

  /** The connection stays on this worker for good. */
  settle(socket: Socket): void {
    this.settled.add(socket);
  }

  /**
   * Whether a new viewer should move to `owner`, a worker of this host, by the load rule;
   * `myViewers`: this worker's live viewers now.
   */
  shouldMove(owner: string, myViewers: number): boolean {
    const p = this.peers.get(owner);
    if (!p || Date.now() - p.at > STALE_MS || p.overloaded) return false;
    const theirs = p.viewers + (this.movedSince.get(owner) ?? 0);
    return theirs < (this.opts.spreadFrom ?? 0) || theirs <= myViewers + SLACK;
  }

  /**
   * Sends the request's connection to `owner`: true once it is on its way (this worker must
   * not answer it), false when it cannot be sent (answer it here).
   */
  moveTo(req: Request, owner: string): boolean {
    const socket = req.socket;
    if (!this.server || socket.destroyed || this.closed) return false;
    const msg: HandoffMessage = { t: 'handoff:socket', to: owner, from: this.opts.workerId, head: requestHead(req).toString('base64') };
    try {
      // Node detaches the descriptor when the message is written (after any handle queued
      // before it); only then may this side's socket object be dropped.
      this.opts.send(msg, socket, { keepOpen: false }, (err) => {
        // Its descriptor left with the message: this only frees the HTTP server's bookkeeping
        // (no close of the connection, which now belongs to the owner). Node counts the
        // connection out of server._connections twice (send, destroy); nothing here reads it.
        if (err) this.opts.logger.warn('viewer hand-off failed: the connection is closed', { owner, error: String(err) });
        socket.destroy();
      });
    } catch (err) {
      this.opts.logger.warn('viewer hand-off failed; served here', { error: String(err) });
      return false;
    }
    this.count(owner, 1);
    this.opts.onMove?.('out');
    return true;
  }

  /** A message from the primary: the peers' loads, or a connection handed to this worker. */
  onMessage(msg: unknown, handle: unknown): boolean {
    const m = msg as HandoffMessage | null;
    if (m?.t === 'handoff:peers' && Array.isArray(m.peers)) {
      const at = Date.now();
      this.peers = new Map(m.peers.filter((p) => p.workerId !== this.opts.workerId).map((p) => [p.workerId, { ...p, at }]));
      this.movedSince.clear();
      return true;
    }
    if (m?.t !== 'handoff:socket') return false;
    const socket = handle as Socket | undefined;
    if (!socket || typeof socket.unshift !== 'function') return true; // the player hung up on the way
    if (!this.server || typeof m.head !== 'string') {
      socket.destroy();
      return true;
    }
    // A reset before the server took the socket must not be an unhandled 'error'.
    socket.on('error', () => socket.destroy());
    this.settled.add(socket);
    if (typeof m.from === 'string') this.count(m.from, -1);
    this.opts.onMove?.('in');
    // The head goes back in front of whatever the player sends next; the server parses it as
    // a new connection's first request.
    socket.unshift(Buffer.from(m.head, 'base64'));
    this.server.emit('connection', socket);
    return true;
  }

  /** The worker stops: nothing moves out of it from now on. */
  close(): void {
    this.closed = true;
  }

  private count(peer: string, n: number): void {
    this.movedSince.set(peer, (this.movedSince.get(peer) ?? 0) + n);
  }
}
