// Messages between workers and the primary for the embedded coordinator.
import type { CoordinatorEvent } from './coordinator.js';

export interface IpcCall {
  t: 'coord:call';
  id: number;
  method: string;
  args: unknown[];
}

export interface IpcReply {
  t: 'coord:reply';
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}

export interface IpcEvent {
  t: 'coord:event';
  event: CoordinatorEvent;
}

export type IpcMessage = IpcCall | IpcReply | IpcEvent;

export const isIpcMessage = (m: unknown): m is IpcMessage =>
  typeof m === 'object' && m !== null && typeof (m as { t?: unknown }).t === 'string' &&
  (m as { t: string }).t.startsWith('coord:');

/** The Coordinator methods a worker may call (everything but subscribe/close). */
export const CALLABLE = new Set([
  'putStream', 'getStream', 'listStreams', 'deleteStream', 'deleteStreamIfIdle', 'setStreamStatus', 'getStreamStatus',
  'acquireLease', 'renewLease', 'releaseLease', 'leaseHolder', 'releaseLeasesHeldBy',
  'putClient', 'deleteClient', 'listClients', 'hasClients', 'putWorker', 'listWorkers', 'removeWorker',
  'getOrSetValue', 'publish', 'ping',
  'setValue', 'getValue', 'deleteValue', 'putWebhook', 'deleteWebhook', 'listWebhooks',
]);

/** The error getOrSetValue answers when asked without a candidate and no value exists. */
export const ABSENT = 'coord:absent';
