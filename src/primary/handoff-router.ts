// The primary's part of the viewer hand-off (src/http/socket-handoff.ts): it answers each
// worker's load report (src/worker-load.ts) with every worker's recent report, and passes a handed-off connection
// on to the worker it is for. A connection for a worker that is gone, stopping, or that exits
// before it took the connection goes back to its sender, which serves it itself: a moved
// player is not dropped by the move.
import type { Worker } from 'node:cluster';
import type { Socket } from 'node:net';
import type { HandoffMessage } from '../http/socket-handoff.js';
import { workerLoad, type WorkerLoad } from '../worker-load.js';

type SocketMessage = Extract<HandoffMessage, { t: 'handoff:socket' }>;

interface Peer {
  worker: Worker;
  load: WorkerLoad;
  /** When its last report arrived (ms). */
  at: number;
}

/** A worker silent this long (its loop stuck) is handed nothing. */
const STALE_MS = 3000;

export class HandoffRouter {
  /** Workers that take handed-off viewers, by worker id. */
  private readonly peers = new Map<string, Peer>();
  /** Workers stopping or gone: their reports no longer make them peers. */
  private readonly gone = new WeakSet<Worker>();
  /**
   * Connections on their way to a worker: Node queues a handle until the worker acknowledged
   * the one before, and a worker that exits meanwhile never takes it.
   */
  private readonly inFlight = new Map<Worker, Set<{ socket: Socket; msg: SocketMessage; from: Worker }>>();

  /** Listens to a worker's hand-off messages (from its fork on). */
  attach(worker: Worker): void {
    worker.on('message', (msg: HandoffMessage, handle?: Socket) => {
      const load = workerLoad(msg);
      if (load) this.onLoad(worker, load);
      if (msg?.t === 'handoff:socket') this.forward(worker, msg, handle);
    });
    worker.once('exit', () => {
      this.forget(worker);
      this.returnInFlight(worker);
    });
  }

  /** A worker that stops (shutdown, rolling restart) is handed nothing more. */
  forget(worker: Worker): void {
    this.gone.add(worker);
    for (const [id, p] of this.peers) if (p.worker === worker) this.peers.delete(id);
  }

  private onLoad(worker: Worker, load: WorkerLoad): void {
    if (this.gone.has(worker)) return;
    const now = Date.now();
    this.peers.set(load.workerId, { worker, load, at: now });
    if (!worker.isConnected()) return;
    const peers = [...this.peers.values()].filter((p) => now - p.at <= STALE_MS).map((p) => p.load);
    worker.send({ t: 'handoff:peers', peers } satisfies HandoffMessage);
  }

  private forward(from: Worker, msg: SocketMessage, handle?: Socket): void {
    // The player hung up while its connection was on the way: nothing to pass on.
    if (!handle) return;
    // A reset while the socket waits here must not be an unhandled 'error' in the primary.
    handle.on('error', () => handle.destroy());
    const to = this.peers.get(msg.to)?.worker;
    this.send(to?.isConnected() ? to : from, msg, handle, from);
  }

  private send(target: Worker, msg: SocketMessage, socket: Socket, from: Worker): void {
    if (!target.isConnected()) return void socket.destroy();
    let pending = this.inFlight.get(target);
    if (!pending) this.inFlight.set(target, (pending = new Set()));
    const entry = { socket, msg, from };
    pending.add(entry);
    // The primary's copy of the socket object is dropped once the descriptor is on its way
    // (Node's socket lists wait for its 'close').
    target.send(msg, socket, { keepOpen: false }, () => {
      pending.delete(entry);
      socket.destroy();
    });
  }

  /** Connections still queued for a worker that exited go back to their senders. */
  private returnInFlight(worker: Worker): void {
    const pending = this.inFlight.get(worker);
    this.inFlight.delete(worker);
    for (const { socket, msg, from } of pending ?? []) {
      if (socket.destroyed || from === worker) socket.destroy();
      else this.send(from, msg, socket, from);
    }
  }
}
