// Requests Node's HTTP parser refuses before express sees them (a control character in a
// header, a header block over the size limit, a malformed request line) get the same JSON
// error shape as every other bad input, instead of Node's bare `400 Bad Request`.
import type http from 'node:http';
import type { Duplex } from 'node:stream';

const ANSWERS: Record<string, [number, string, string]> = {
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large', 'The request headers are too large'],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'Request Timeout', 'The request was not received in time'],
};
const DEFAULT_ANSWER: [number, string, string] = [400, 'Bad Request', 'The request is not valid HTTP'];

/** Installs the JSON answer on a server's `clientError` event. */
export function answerClientErrorsAsJson(server: http.Server): void {
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    if (err.code === 'ECONNRESET' || !socket.writable) return void socket.destroy();
    const [status, reason, detail] = ANSWERS[err.code ?? ''] ?? DEFAULT_ANSWER;
    const body = JSON.stringify({ detail, code: 'BAD_REQUEST' });
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
}
