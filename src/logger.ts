// winston JSON logs (or `pretty` for a terminal), with the worker id on every line.
import winston from 'winston';

export type Logger = winston.Logger;

export interface LoggerOptions {
  level: string;
  format: 'json' | 'pretty';
  workerId?: string;
  silent?: boolean;
}

export function createLogger(opts: LoggerOptions): Logger {
  const format =
    opts.format === 'pretty'
      ? winston.format.combine(
          winston.format.timestamp(),
          winston.format.colorize(),
          winston.format.printf(({ timestamp, level, message, ...rest }) => {
            const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
            return `${String(timestamp)} ${level} ${String(message)}${extra}`;
          }),
        )
      : winston.format.combine(winston.format.timestamp(), winston.format.json());
  return winston.createLogger({
    level: opts.level,
    format,
    defaultMeta: opts.workerId ? { worker_id: opts.workerId } : {},
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn'] })],
    silent: opts.silent ?? false,
  });
}
