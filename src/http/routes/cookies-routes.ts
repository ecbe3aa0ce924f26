// GET /validate-cookies-file?path= (API.md §9, upstream m3u-proxy 0.4.x): whether a cookie file
// the editor wants to give a resolver exists on the proxy host, is a readable regular file and
// is in the Netscape format. A management route (token rules of §2). It tells whether a path
// exists, so it never says more: no contents, no line of the file, only which rule failed.
import { Router } from 'express';
import { checkCookiesFile } from '../../streams/resolvers/cookies-file.js';
import { queryString } from '../schemas.js';

export function cookiesRoutes(): Router {
  const r = Router();
  r.get('/validate-cookies-file', async (req, res) => {
    const file = queryString(req.query, 'path', true);
    const { valid, message } = await checkCookiesFile(file);
    res.json({ valid, message });
  });
  return r;
}
