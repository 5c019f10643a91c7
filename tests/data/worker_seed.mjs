// Rebuilds, for each request described on stdin, the JSON body that the
// original Cloudflare Worker (backblaze-b2-samples/cloudflare-b2-proxy,
// index.js) POSTed to WEBHOOK_URL, computed the way it computed it: header
// lookups through the Fetch API's `Headers` (case-insensitive, `null` when
// absent), `Content-Length` turned into a number with `parseInt` (or `null`
// when the header is missing or empty), the upstream response's status, and
// the upstream URL as the Fetch API serializes it (`response.url`).
//
// stdin:  [{"headers": [[name, value], ...], "method": "PUT", "status": 200,
//           "upstream": "http://127.0.0.1:PORT", "path": "/bucket/key?query"}]
// stdout: the JSON array of the bodies, in the same order.
import { readFileSync } from 'node:fs';

const requests = JSON.parse(readFileSync(0, 'utf8'));
const bodies = requests.map((request) => {
  const headers = new Headers(request.headers);
  const length = headers.get('content-length');
  const body = JSON.stringify({
    contentLength: length ? parseInt(length) : null,
    contentType: headers.get('content-type'),
    method: request.method,
    signatureTimestamp: headers.get('x-amz-date'),
    status: request.status,
    url: new URL(request.path, request.upstream).href,
  });
  // What the receiver parses: the Worker sent the string above.
  return JSON.parse(body);
});
process.stdout.write(JSON.stringify(bodies));
