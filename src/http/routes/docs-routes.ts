// GET /openapi.json and GET /docs (API.md §9): management routes (token rules of §2). The
// document is built once, on the first request, from the router as it is then mounted.
import { Router } from 'express';
import { docsPage } from '../openapi.js';

export function docsRoutes(document: () => unknown): Router {
  const r = Router();
  let cached: unknown = null;
  r.get('/openapi.json', (_req, res) => {
    cached ??= document();
    res.json(cached);
  });
  r.get('/docs', (_req, res) => {
    res.type('html').send(docsPage());
  });
  return r;
}
