// API token checks (API.md §2): header `X-API-Token` wins over query `api_token`; compared in
// constant time; 401 when missing, 403 when wrong. Auth is off when no token is configured.
import type { NextFunction, Request, Response } from 'express';
import { AppError } from '../errors.js';
import { safeEqual } from '../safe-equal.js';

export type TokenState = 'off' | 'valid' | 'missing' | 'invalid';

export function tokenState(req: Request, apiToken: string | undefined): TokenState {
  if (!apiToken) return 'off';
  const header = req.get('x-api-token');
  const fromQuery = req.query.api_token;
  const given = header ?? (typeof fromQuery === 'string' ? fromQuery : undefined);
  if (!given) return 'missing';
  return safeEqual(given, apiToken) ? 'valid' : 'invalid';
}

export function authError(state: TokenState): AppError | null {
  if (state === 'missing') return new AppError(401, 'AUTH_REQUIRED', 'An API token is required (header X-API-Token or query api_token)');
  if (state === 'invalid') return new AppError(403, 'AUTH_INVALID', 'The API token is not valid');
  return null;
}

/** Middleware for management routes. */
export function requireToken(apiToken: string | undefined) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const err = authError(tokenState(req, apiToken));
    if (err?.status === 401) res.set('WWW-Authenticate', 'Bearer');
    next(err ?? undefined);
  };
}
