// Picks the backend: Redis when REDIS_ENABLED, else the embedded one (memory in the primary,
// reached over IPC by workers).
import type { Config } from '../config.js';
import type { Logger } from '../logger.js';
import type { Coordinator } from './coordinator.js';
import { IpcCoordinator } from './ipc-coordinator.js';
import { MemoryCoordinator } from './memory-coordinator.js';
import { RedisCoordinator } from './redis-coordinator.js';

export function createCoordinator(config: Config, logger: Logger, role: 'primary' | 'worker'): Coordinator {
  if (config.redisEnabled) {
    return new RedisCoordinator({
      url: config.redisUrl,
      keyPrefix: config.redisKeyPrefix,
      fallbackPassword: config.apiToken,
      logger,
    });
  }
  return role === 'primary' ? new MemoryCoordinator() : new IpcCoordinator();
}
