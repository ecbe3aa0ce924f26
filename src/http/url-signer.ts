// Signed player URIs (API.md §6.2): HMAC-SHA256 over "{stream_id}\n{target_url}\n{exp}",
// base64url, checked in constant time.
import { createHmac } from 'node:crypto';
import { safeEqual } from '../safe-equal.js';

export class UrlSigner {
  constructor(
    private readonly secret: string,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  sign(streamId: string, targetUrl: string): { exp: number; sig: string } {
    const exp = Math.floor((this.now() + this.ttlMs) / 1000);
    return { exp, sig: this.mac(streamId, targetUrl, exp) };
  }

  verify(streamId: string, targetUrl: string, exp: string | undefined, sig: string | undefined): boolean {
    if (!exp || !sig || !/^\d{1,12}$/.test(exp)) return false;
    if (Number(exp) * 1000 < this.now()) return false;
    return safeEqual(this.mac(streamId, targetUrl, Number(exp)), sig);
  }

  private mac(streamId: string, targetUrl: string, exp: number): string {
    return createHmac('sha256', this.secret).update(`${streamId}\n${targetUrl}\n${exp}`).digest('base64url');
  }
}
