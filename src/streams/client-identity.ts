// Viewer ids as the Python m3u-proxy makes them, so the editor's accounting matches.
import { randomBytes } from 'node:crypto';
import { md5 } from './stream-definition.js';

export interface ClientIdentityInput {
  clientId?: string | undefined;
  ip: string;
  userAgent: string;
  streamId: string;
  username: string | null;
}

/**
 * `client_id` from the query, else a hash of who is asking; either gets a random suffix when
 * that id already has an open connection, so two players never share one record.
 */
export function clientIdFor(input: ClientIdentityInput, isConnected: (id: string) => boolean): string {
  const base =
    input.clientId ||
    `client_${md5(`${input.ip}-${input.userAgent}-${input.streamId}-${input.username ?? ''}`).slice(0, 16)}`;
  return isConnected(base) ? `${base}_${randomBytes(4).toString('hex')}` : base;
}
