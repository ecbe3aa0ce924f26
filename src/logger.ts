// winston JSON logs (or `pretty` for a terminal), with the worker id on every line.
import winston from 'winston';
import { redactDeep } from './redact.js';

export type Logger = winston.Logger;

export interface LoggerOptions {
  level: string;
  format: 'json' | 'pretty';
  workerId?: string;
  silent?: boolean;
}

/**
 * Every string field of every line goes through the credential rule (src/redact.ts), so no
 * call site can leak a provider URL's account by forgetting to redact it.
 */
const redactFields = winston.format((info) => {
  for (const k of Object.keys(info)) info[k] = redactDeep(info[k]);
  return info;
});

export function createLogger(opts: LoggerOptions): Logger {
  const format =
    opts.format === 'pretty'
      ? winston.format.combine(
          redactFields(),
          winston.format.timestamp(),
          winston.format.colorize(),
          winston.format.printf(({ timestamp, level, message, ...rest }) => {
            const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
            return `${String(timestamp)} ${level} ${String(message)}${extra}`;
          }),
        )
      : winston.format.combine(redactFields(), winston.format.timestamp(), winston.format.json());
  return winston.createLogger({
    level: opts.level,
    format,
    defaultMeta: opts.workerId ? { worker_id: opts.workerId } : {},
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn'] })],
    silent: opts.silent ?? false,
  });
}
