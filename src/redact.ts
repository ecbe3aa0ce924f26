// Credentials in URLs (`scheme://user:pass@`) never reach a log line, an error detail or
// /info: one rule for the whole product, applied anywhere in a text (ffmpeg echoes URLs
// inside its messages). Imports nothing, so config and logger may both use it.
export function redactUrl(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, '$1***@');
}
