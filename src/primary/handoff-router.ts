// The primary's part of the viewer hand-off (src/http/socket-handoff.ts): it answers each
// worker's load report with every worker's last report, and passes a handed-off connection
// on to the worker it is for. A connection for a worker that is gone (or stopping) goes back
// to its sender, which serves it itself: a moved player is never dropped by the move.
import type { Worker } from 'node:cluster';
import type { Socket } from 'node:net';
import type { HandoffMessage, PeerLoad } from '../http/socket-handoff.js';

interface Peer {
  worker: Worker;
  load: PeerLoad;
}

export class HandoffRouter {
  /** Workers that take handed-off viewers, by worker id. */
  private readonly peers = new Map<string, Peer>();

  /** Listens to a worker's hand-off messages (from its fork on). */
  attach(worker: Worker): void {
    worker.on('message', (msg: HandoffMessage, handle?: Socket) => {
      if (msg?.t === 'handoff:load' && typeof msg.workerId === 'string') this.onLoad(worker, msg);
      if (msg?.t === 'handoff:socket') this.forward(worker, msg, handle);
    });
    worker.once('exit', () => this.forget(worker));
  }

  /** A worker that stops (shutdown, rolling restart) is handed nothing more. */
  forget(worker: Worker): void {
    for (const [id, p] of this.peers) if (p.worker === worker) this.peers.delete(id);
  }

  private onLoad(worker: Worker, msg: PeerLoad): void {
    const load: PeerLoad = { workerId: msg.workerId, viewers: Number(msg.viewers) || 0, overloaded: msg.overloaded === true };
    this.peers.set(load.workerId, { worker, load });
    if (!worker.isConnected()) return;
    const peers = [...this.peers.values()].map((p) => p.load);
    worker.send({ t: 'handoff:peers', peers } satisfies HandoffMessage);
  }

  private forward(from: Worker, msg: Extract<HandoffMessage, { t: 'handoff:socket' }>, handle?: Socket): void {
    // The player hung up while its connection was on the way: nothing to pass on.
    if (!handle) return;
    const to = this.peers.get(msg.to)?.worker;
    const target = to?.isConnected() ? to : from.isConnected() ? from : null;
    if (!target) return void handle.destroy();
    // The primary's copy of the socket object is dropped once the descriptor is on its way
    // (Node's socket lists wait for its 'close').
    target.send(msg, handle, { keepOpen: false }, () => handle.destroy());
  }
}
