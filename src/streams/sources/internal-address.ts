// Loopback and link-local addresses (the box itself, cloud metadata at 169.254.169.254): an
// upstream may redirect there only when the URL the stream was given already pointed there.
// A LAN tuner named directly (`http://localhost:5004/…`, `http://192.168.1.20/…`) keeps working;
// a public provider cannot bounce the proxy into a service on the box (issue 13, input 5).
import dns from 'node:dns';
import net from 'node:net';

/** 127/8, 0/8, 169.254/16, ::1, ::, fe80::/10, and those as IPv4-mapped IPv6. */
export function isInternalAddress(address: string): boolean {
  let ip = address.replace(/^\[|\]$/g, '').toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(ip);
  if (mapped) ip = mapped[1]!;
  if (net.isIPv4(ip)) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    return a === 127 || a === 0 || (a === 169 && b === 254);
  }
  if (net.isIPv6(ip)) {
    if (ip === '::1' || ip === '::') return true;
    const first = parseInt(ip.split(':')[0] || '0', 16);
    return (first & 0xffc0) === 0xfe80;
  }
  return false;
}

const isLocalName = (host: string): boolean => host === 'localhost' || host.endsWith('.localhost');

/** Whether a URL's host is, or resolves to, a loopback or link-local address. */
export async function pointsInside(url: string): Promise<boolean> {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (net.isIP(host)) return isInternalAddress(host);
  if (isLocalName(host)) return true;
  try {
    const found = await dns.promises.lookup(host, { all: true });
    return found.some((a) => isInternalAddress(a.address));
  } catch {
    return false; // unresolvable: the request itself will fail
  }
}

export class InternalRedirectError extends Error {
  readonly code = 'EINTERNALREDIRECT';
}

/**
 * A `lookup` for http.request that refuses names resolving to an inside address, checked at
 * connect time (so a name cannot resolve outside for a check and inside for the connection).
 */
export const outsideOnlyLookup: net.LookupFunction = (hostname, options, callback) => {
  if (isLocalName(hostname.toLowerCase())) {
    return void callback(new InternalRedirectError('redirect to a loopback or link-local address refused'), '', 4);
  }
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return void (callback as (e: Error) => void)(err);
    const list = addresses as dns.LookupAddress[];
    if (list.some((a) => isInternalAddress(a.address))) {
      return void callback(new InternalRedirectError('redirect to a loopback or link-local address refused'), '', 4);
    }
    if ((options as dns.LookupOptions).all) return void (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, list);
    callback(null, list[0]!.address, list[0]!.family);
  });
};
