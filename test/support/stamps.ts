// Origin stamps: one private MPEG-TS packet (pid 0x1ff0, payload only, never in the PMT)
// after every write of a `?stamp=1` live response, naming the origin connection and the
// instant (the origin's performance.now(), ms) the bytes were handed to the socket. The proxy
// passes unknown pids through untouched, so a viewer can tell which upstream connection,
// written when, each stretch of its bytes came from: the proof that a frozen owner's upstream
// bytes, written while it was stopped, never reach anyone.
import { performance } from 'node:perf_hooks';

export const STAMP_PID = 0x1ff0;
const MARK = 'M3UP-STAMP';

export interface Stamp {
  /** The origin's request number for the path (1 = the first upstream connection). */
  conn: number;
  /** performance.now() of the origin process when the preceding bytes were written. */
  at: number;
  /** Offset of the stamp packet in the viewer's bytes. */
  offset: number;
}

/** The stamp packet for connection `conn`, continuity counter `cc`, written now. */
export function stampPacket(conn: number, cc: number): Buffer {
  const b = Buffer.alloc(188, 0xff);
  b[0] = 0x47;
  b[1] = (STAMP_PID >> 8) & 0x1f;
  b[2] = STAMP_PID & 0xff;
  b[3] = 0x10 | (cc & 0x0f);
  b.write(`${MARK} ${conn} ${performance.now().toFixed(1)} `, 4, 'latin1');
  return b;
}

/** Every stamp in a packet-aligned TS byte string. */
export function readStamps(buf: Buffer): Stamp[] {
  const out: Stamp[] = [];
  for (let off = 0; off + 188 <= buf.length; off += 188) {
    if (buf[off] !== 0x47 || (((buf[off + 1]! & 0x1f) << 8) | buf[off + 2]!) !== STAMP_PID) continue;
    const m = new RegExp(`^${MARK} (\\d+) ([\\d.]+) `).exec(buf.toString('latin1', off + 4, off + 64));
    if (m) out.push({ conn: Number(m[1]), at: Number(m[2]), offset: off });
  }
  return out;
}
