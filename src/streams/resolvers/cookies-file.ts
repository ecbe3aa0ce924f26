// Cookie files for the resolvers (`cookies_path`), in the Netscape format browsers' export
// extensions, yt-dlp and curl write: an optional `# Netscape HTTP Cookie File` header, comments,
// and one cookie per line as 7 tab-separated fields (domain, include-subdomains TRUE/FALSE,
// path, secure TRUE/FALSE, expiry as unix seconds, name, value); `#HttpOnly_` before the
// domain marks an HttpOnly cookie. The answers say what is wrong, never what the file holds.
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import path from 'node:path';

export interface CookiesCheck {
  valid: boolean;
  message: string;
}

export interface Cookie {
  domain: string;
  includeSubdomains: boolean;
  path: string;
  secure: boolean;
  expires: number;
  name: string;
  value: string;
}

/** Larger files are not cookie exports; refusing them keeps a request from reading big files. */
export const MAX_COOKIES_BYTES = 1024 * 1024;

const HEADER = /^#\s*(Netscape )?HTTP Cookie File/i;
const BOOL = /^(TRUE|FALSE)$/i;

/** Parses Netscape cookie text; throws an Error naming the first bad line (by number only). */
export function parseCookies(text: string): Cookie[] {
  const cookies: Cookie[] = [];
  let header = false;
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    let line = raw;
    if (i === 0 && HEADER.test(line)) header = true;
    if (line.startsWith('#HttpOnly_')) line = line.slice('#HttpOnly_'.length);
    else if (line.startsWith('#') || line.trim() === '') return;
    const f = line.split('\t');
    if (f.length !== 7 || !f[0] || !BOOL.test(f[1]!) || !BOOL.test(f[3]!) || !/^-?\d+$/.test(f[4]!) || !f[5]) {
      throw new Error(`line ${i + 1} is not a Netscape cookie line (7 tab-separated fields: domain, TRUE/FALSE, path, TRUE/FALSE, expiry, name, value)`);
    }
    cookies.push({
      domain: f[0], includeSubdomains: /^TRUE$/i.test(f[1]!), path: f[2]!, secure: /^TRUE$/i.test(f[3]!),
      expires: Number(f[4]), name: f[5], value: f[6]!,
    });
  });
  if (!header && cookies.length === 0) throw new Error('it has neither the "# Netscape HTTP Cookie File" header nor a cookie line');
  return cookies;
}

/**
 * Checks `file` as a cookie file: an absolute path to an existing, readable regular file of at
 * most 1 MiB in the Netscape format. `{ valid, message }` as upstream m3u-proxy 0.4.x answers
 * `/validate-cookies-file`; never throws.
 */
export async function checkCookiesFile(file: string): Promise<CookiesCheck & { cookies?: Cookie[] }> {
  if (!file || file.includes('\0') || !path.isAbsolute(file)) {
    return { valid: false, message: 'The path must be an absolute path on the proxy host' };
  }
  const st = await stat(file).catch(() => null);
  if (!st) return { valid: false, message: 'The file does not exist' };
  if (!st.isFile()) return { valid: false, message: 'The path is not a regular file' };
  if (st.size > MAX_COOKIES_BYTES) return { valid: false, message: `The file is larger than ${MAX_COOKIES_BYTES} bytes; it is not a cookie export` };
  const readable = await access(file, constants.R_OK).then(() => true, () => false);
  const text = readable ? await readFile(file, 'utf8').catch(() => null) : null;
  if (text === null) return { valid: false, message: 'The file is not readable by the proxy' };
  try {
    const cookies = parseCookies(text);
    return { valid: true, message: `Valid Netscape cookie file (${cookies.length} cookie${cookies.length === 1 ? '' : 's'})`, cookies };
  } catch (err) {
    return { valid: false, message: `The file is not in the Netscape cookie format: ${(err as Error).message}` };
  }
}

/** The cookies a request to `url` would carry (domain and path match, not expired; http(s)). */
export function cookiesFor(cookies: readonly Cookie[], url: string, nowS = Date.now() / 1000): Cookie[] {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return [];
  }
  const host = u.hostname.toLowerCase();
  return cookies.filter((c) => {
    const domain = c.domain.replace(/^\./, '').toLowerCase();
    const domainOk = host === domain || ((c.includeSubdomains || c.domain.startsWith('.')) && host.endsWith(`.${domain}`));
    const pathOk = u.pathname.startsWith(c.path || '/');
    const live = c.expires === 0 || c.expires > nowS;
    return domainOk && pathOk && live && (!c.secure || u.protocol === 'https:');
  });
}
