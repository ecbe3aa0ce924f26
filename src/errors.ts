// One error type for every answer that is not a success: it carries the HTTP status, the
// stable code of API.md §1 and a sentence for a person. Routes throw it; the error handler
// turns it into `{ detail, code, errors? }`.

export type ErrorCode =
  | 'BAD_REQUEST'
  | 'PROFILE_NOT_FOUND'
  | 'TEMPLATE_INVALID'
  | 'NO_FAILOVER'
  | 'AUTH_REQUIRED'
  | 'AUTH_INVALID'
  | 'SIGNATURE_INVALID'
  | 'STREAM_NOT_FOUND'
  | 'CLIENT_NOT_FOUND'
  | 'WEBHOOK_NOT_FOUND'
  | 'NOT_FOUND'
  | 'WRONG_STREAM_TYPE'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'VALIDATION_ERROR'
  | 'NOT_IMPLEMENTED'
  | 'UPSTREAM_UNAVAILABLE'
  | 'RESOLVER_UNAVAILABLE'
  | 'COORDINATOR_UNAVAILABLE'
  | 'SHUTTING_DOWN'
  | 'OVERLOADED'
  | 'INTERNAL';

export interface FieldError {
  field: string;
  message: string;
}

export class AppError extends Error {
  readonly status: number;
  readonly code: ErrorCode;
  readonly errors?: FieldError[];
  /** Response headers that belong to the answer (e.g. `Retry-After` on a 503). */
  readonly headers?: Record<string, string>;

  constructor(status: number, code: ErrorCode, detail: string, errors?: FieldError[], headers?: Record<string, string>) {
    super(detail);
    this.name = 'AppError';
    this.status = status;
    this.code = code;
    if (errors) this.errors = errors;
    if (headers) this.headers = headers;
  }

  toJSON(): { detail: string; code: ErrorCode; errors?: FieldError[] } {
    return this.errors
      ? { detail: this.message, code: this.code, errors: this.errors }
      : { detail: this.message, code: this.code };
  }
}

export const validationError = (detail: string, errors?: FieldError[]): AppError =>
  new AppError(422, 'VALIDATION_ERROR', detail, errors);

export const streamNotFound = (id: string): AppError =>
  new AppError(404, 'STREAM_NOT_FOUND', `Stream ${id} not found`);

export const upstreamUnavailable = (detail: string): AppError =>
  new AppError(502, 'UPSTREAM_UNAVAILABLE', detail);

export const isAppError = (err: unknown): err is AppError => err instanceof AppError;
