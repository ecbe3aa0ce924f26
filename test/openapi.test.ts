// The OpenAPI document and the docs page: every mounted route is in the document, documented,
// with the auth rule the app really applies; served under both base paths with the token rules
// of the management routes.
import { expect } from 'chai';
import type { Router } from 'express';
import request from 'supertest';
import { mountedRoutes, undocumentedRoutes } from '../src/http/openapi.js';
import { testApp } from './support/proxy.js';

const TOKEN = 'openapi-test-token';

interface Doc {
  openapi: string;
  paths: Record<string, Record<string, { security?: unknown[]; requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown> } }> } }>>;
}

describe('OpenAPI document and /docs', function () {
  this.timeout(60_000);
  let s: ReturnType<typeof testApp>;
  let doc: Doc;

  before(async () => {
    s = testApp({ API_TOKEN: TOKEN });
    const res = await request(s.app).get('/openapi.json').set('X-API-Token', TOKEN);
    expect(res.status).to.equal(200);
    doc = res.body as Doc;
  });
  after(async () => {
    await s?.close();
  });

  /** Every route mounted on the app, without the ROOT_PATH copies (same routes). */
  const appRoutes = () => {
    const root = s.config.rootPath;
    const all = mountedRoutes(s.app.router as unknown as Router, null);
    const seen = new Map<string, { path: string; method: string }>();
    for (const r of all) {
      const path = root && r.path.startsWith(`${root}/`) ? r.path.slice(root.length) : root && r.path === root ? '/' : r.path;
      seen.set(`${r.method} ${path}`, { path, method: r.method });
    }
    return [...seen.values()];
  };

  it('every mounted route appears in the document, with words for it', () => {
    const routes = appRoutes();
    expect(routes.length).to.be.greaterThan(30);
    const missing = routes.filter((r) => !doc.paths[r.path]?.[r.method]).map((r) => `${r.method} ${r.path}`);
    expect(missing).to.deep.equal([]);
    expect(undocumentedRoutes(routes.map((r) => ({ ...r, tokenRequired: false })))).to.deep.equal([]);
    for (const p of ['/streams', '/transcode', '/validate-cookies-file', '/stream/{id}', '/openapi.json', '/docs']) {
      expect(doc.paths, p).to.have.property(p);
    }
  });

  it('request bodies come from the route schemas (resolver fields included)', () => {
    const props = doc.paths['/transcode']!.post!.requestBody!.content['application/json']!.schema.properties!;
    expect(props).to.include.keys('url', 'profile', 'profile_variables', 'resolver', 'resolver_args', 'cookies_path', 'headers', 'user_agent');
    expect(doc.paths['/streams']!.post!.requestBody!.content['application/json']!.schema.properties).to.include.keys('url', 'metadata', 'failover_urls');
  });

  it('the documented auth rule of every operation is what the app does without a token', async () => {
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        // A file name the route serves (an unknown one falls through to the token gate).
        const url = path.replace('{file}', 'live000001.ts').replace(/\{[^}]+\}/g, 'd41d8cd98f00b204e9800998ecf8427e');
        const res = await (request(s.app) as unknown as Record<string, (u: string) => request.Test>)[method]!(url);
        const needsToken = (op.security ?? []).length > 0;
        if (needsToken) expect(res.status, `${method} ${path}`).to.equal(401);
        else expect(res.status, `${method} ${path}`).to.not.be.oneOf([401, 403]);
      }
    }
  });

  it('is served under both base paths, needs the token like other management routes, and /docs loads Swagger UI', async () => {
    expect((await request(s.app).get('/m3u-proxy/openapi.json').set('X-API-Token', TOKEN)).body.openapi).to.equal('3.1.0');
    expect((await request(s.app).get('/openapi.json')).status).to.equal(401);
    expect((await request(s.app).get('/m3u-proxy/docs').set('X-API-Token', 'wrong')).status).to.equal(403);
    const page = await request(s.app).get('/m3u-proxy/docs').query({ api_token: TOKEN });
    expect(page.status).to.equal(200);
    expect(page.headers['content-type']).to.match(/text\/html/);
    const scripts = [...page.text.matchAll(/src="([^"]+)"/g)].map((m) => m[1]!);
    expect(scripts).to.deep.equal(['docs/assets/swagger-ui-bundle.js']);
    // The page's relative asset URLs resolve under the base path it was served from.
    const asset = await request(s.app).get(`/m3u-proxy/${scripts[0]}`);
    expect(asset.status).to.equal(200);
    expect(asset.text).to.include('SwaggerUIBundle');
  });
});
