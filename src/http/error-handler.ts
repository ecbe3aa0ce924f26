// Every failure leaves as `{ detail, code }` JSON (API.md §1): body-parser errors mapped to
// their stable codes, unknown errors as 500 INTERNAL with a request id, never a stack.
import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import { CoordinatorUnavailableError } from '../coordination/coordinator.js';
import { AppError, isAppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { redactDeep } from '../redact.js';

interface BodyParserError {
  type?: string;
  status?: number;
}

function fromBodyParser(err: BodyParserError, limit: number): AppError | null {
  switch (err.type) {
    case 'entity.parse.failed':
      return new AppError(400, 'BAD_REQUEST', 'The request body is not valid JSON');
    case 'entity.too.large':
      return new AppError(413, 'PAYLOAD_TOO_LARGE', `The request body is larger than ${limit} bytes`);
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new AppError(415, 'UNSUPPORTED_MEDIA_TYPE', 'The request body must be UTF-8 JSON');
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return new AppError(400, 'BAD_REQUEST', 'The request body could not be read');
    default:
      return null;
  }
}

/**
 * A malformed request that express or its router rejected before any route ran: a path
 * parameter with bad percent-encoding (`/streams/%E0%A4%A`, a URIError with status 400 from
 * the router's decodeParam), or any http-errors style 4xx it marks as safe to expose.
 */
function fromRouter(err: unknown): AppError | null {
  const e = err as { status?: unknown; expose?: unknown } | null;
  if (err instanceof URIError) return new AppError(400, 'BAD_REQUEST', 'The request path has invalid percent-encoding');
  if (e && typeof e.status === 'number' && e.status >= 400 && e.status < 500 && e.expose === true) {
    return new AppError(e.status, 'BAD_REQUEST', 'The request is malformed');
  }
  return null;
}

export function notFound(req: Request, _res: Response, next: NextFunction): void {
  next(new AppError(404, 'NOT_FOUND', `No route for ${req.method} ${req.path}`));
}

export function errorHandler(logger: Logger, bodyLimit: number) {
  return (err: unknown, req: Request, res: Response, _next: NextFunction): void => {
    let appError = isAppError(err)
      ? err
      : err instanceof CoordinatorUnavailableError
        ? new AppError(503, 'COORDINATOR_UNAVAILABLE', 'The coordinator (Redis, or the primary in embedded mode) is unreachable; try again shortly')
        : (fromBodyParser(err as BodyParserError, bodyLimit) ?? fromRouter(err));
    if (!appError) {
      const requestId = randomUUID();
      logger.error('request failed', {
        request_id: requestId, method: req.method, route: req.route?.path ?? req.path,
        error: err instanceof Error ? err.message : String(err),
        stack: err instanceof Error ? err.stack : undefined,
      });
      appError = new AppError(500, 'INTERNAL', `Internal error (request id ${requestId})`);
    }
    if (res.headersSent) {
      // A stream already started: the only honest signal left is to cut it.
      res.destroy();
      return;
    }
    if (appError.headers) res.set(appError.headers);
    // Details may quote an upstream's words (FFmpeg echoes its input URL): no credentials.
    res.status(appError.status).json(redactDeep(appError.toJSON()));
  };
}
