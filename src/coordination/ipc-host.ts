// The primary's side of the embedded coordinator: runs workers' calls against its own
// coordinator (memory, TTLs included) and fans events out to every worker.
import type { Coordinator } from './coordinator.js';
import { ABSENT, CALLABLE, isIpcMessage, type IpcReply } from './ipc-protocol.js';

/** A worker seen from the primary (a cluster Worker fits). */
export interface IpcPeer {
  send(message: unknown): unknown;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  once(event: 'exit', listener: () => void): unknown;
  isConnected(): boolean;
}

export class IpcHost {
  private readonly workers = new Set<IpcPeer>();
  private readonly unsubscribe: () => void;

  constructor(private readonly coordinator: Coordinator) {
    this.unsubscribe = coordinator.subscribe((event) => {
      for (const w of this.workers) if (w.isConnected()) w.send({ t: 'coord:event', event });
    });
  }

  attach(worker: IpcPeer): void {
    this.workers.add(worker);
    worker.on('message', (msg: unknown) => {
      if (!isIpcMessage(msg) || msg.t !== 'coord:call') return;
      void this.call(msg.method, msg.args).then((reply) => {
        if (worker.isConnected()) worker.send({ ...reply, t: 'coord:reply', id: msg.id } satisfies IpcReply);
      });
    });
    worker.once('exit', () => this.workers.delete(worker));
  }

  close(): void {
    this.unsubscribe();
    this.workers.clear();
  }

  private async call(method: string, args: unknown[]): Promise<Omit<IpcReply, 't' | 'id'>> {
    if (!CALLABLE.has(method)) return { ok: false, error: `unknown coordinator method ${method}` };
    try {
      const fn = (this.coordinator as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method]!;
      // A `create` callback cannot cross IPC: getOrSetValue sends the candidate value, or
      // null first to learn whether one exists (so the worker creates only when needed).
      const create = (): string => {
        if (args[1] == null) throw new Error(ABSENT);
        return String(args[1]);
      };
      const callArgs = method === 'getOrSetValue' ? [args[0], create] : args;
      return { ok: true, value: await fn.apply(this.coordinator, callArgs) };
    } catch (err) {
      return { ok: false, error: err instanceof Error ? err.message : String(err) };
    }
  }
}
