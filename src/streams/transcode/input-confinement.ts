// What FFmpeg itself may open for a transcode's input, added at spawn before the one `-i`
// (beside the user agent and headers of input-options.ts), outside any user template:
// - `-protocol_whitelist`: the network protocols an http(s) input and what it nests need (an
//   HLS playlist's segments, AES-128 keys through `crypto`); never `file`, `pipe`, `concat`,
//   `subfile` or `data`, so no playlist or redirect can make FFmpeg read a local file.
// - `-tls_verify 1|0` for https inputs, the same choice as the proxy's own requests
//   (UPSTREAM_TLS_VERIFY, per-stream `tls_verify`). FFmpeg's own default is 0 (it verifies
//   nothing), so the proxy always says which. FFmpeg refuses the option for http inputs
//   ("Option tls_verify not found"), so it is left out there; an http URL that redirects to
//   https is then fetched without verification (FFmpeg's default).
// HLS output (issue 15) writes with `-f hls` into its managed directory: output protocols are
// not affected by an input option.

/** The protocols an input may use (FFmpeg `-protocol_whitelist`). */
export const INPUT_PROTOCOLS = 'http,https,tcp,tls,crypto,httpproxy';

export interface ConfinementOptions {
  tlsVerify: boolean;
}

/**
 * The argv with the confinement options before its `-i` (a checked template has exactly one,
 * whatever URL the spawn puts there); unchanged without one or for a non-http(s) input.
 */
export function confineInput(argv: readonly string[], opts: ConfinementOptions): string[] {
  const at = argv.findLastIndex((t, i) => t === '-i' && /^https?:\/\//i.test(argv[i + 1] ?? ''));
  if (at < 0) return [...argv];
  const url = argv[at + 1]!;
  const extra = ['-protocol_whitelist', INPUT_PROTOCOLS];
  if (/^https:/i.test(url)) extra.push('-tls_verify', opts.tlsVerify ? '1' : '0');
  return [...argv.slice(0, at), ...extra, ...argv.slice(at)];
}
