// A child process that plays the cluster primary for the embedded-coordinator contract:
// it serves a MemoryCoordinator to its parent over the real IPC channel.
import { IpcHost } from '../../src/coordination/ipc-host.js';
import { MemoryCoordinator } from '../../src/coordination/memory-coordinator.js';

const host = new IpcHost(new MemoryCoordinator());
host.attach({
  send: (m) => process.send?.(m),
  on: (event, listener) => process.on(event, listener),
  once: (_event, listener) => process.once('disconnect', listener),
  isConnected: () => process.connected,
});
process.once('disconnect', () => process.exit(0));
