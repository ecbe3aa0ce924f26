// A TCP proxy for partition tests: forwards 127.0.0.1:<port> to a target until `partition()`,
// after which it stops forwarding in both directions while keeping every socket open (a
// black hole, as a cut network looks to both ends: no RST, no FIN, nothing arrives).
// `heal()` forwards again (bytes sent during the partition are lost, as on a real cut, so the
// peers' protocol state may be broken: `heal()` also resets the connections held open).
import net from 'node:net';

export interface TcpProxy {
  port: number;
  /** `redis://127.0.0.1:<port>` style URL helper: `${scheme}://127.0.0.1:${port}`. */
  url(scheme: string): string;
  partition(): void;
  heal(): void;
  readonly partitioned: boolean;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  let partitioned = false;
  const pairs = new Set<{ a: net.Socket; b: net.Socket | null }>();
  const server = net.createServer((a) => {
    const pair: { a: net.Socket; b: net.Socket | null } = { a, b: null };
    pairs.add(pair);
    const drop = (): void => {
      pairs.delete(pair);
      a.destroy();
      pair.b?.destroy();
    };
    a.on('error', drop);
    a.on('close', drop);
    // A connection made during the partition goes nowhere (it hangs, like a SYN into a cut).
    if (partitioned) return;
    const b = net.connect(targetPort, targetHost);
    pair.b = b;
    b.on('error', drop);
    b.on('close', drop);
    a.on('data', (d: Buffer) => {
      if (!partitioned) b.write(d);
    });
    b.on('data', (d: Buffer) => {
      if (!partitioned) a.write(d);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: (scheme) => `${scheme}://127.0.0.1:${port}`,
    partition() {
      partitioned = true;
    },
    heal() {
      partitioned = false;
      // Half-delivered protocol streams cannot be trusted: make both ends reconnect.
      for (const p of [...pairs]) {
        p.a.destroy();
        p.b?.destroy();
      }
      pairs.clear();
    },
    get partitioned() {
      return partitioned;
    },
    async close() {
      for (const p of pairs) {
        p.a.destroy();
        p.b?.destroy();
      }
      pairs.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
