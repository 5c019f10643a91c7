// CreateBucket, PutObject, GetObject, ListObjectsV2 and DeleteObject with
// the AWS JS SDK v3 and virtual-hosted buckets (`bucket.host`).
//
// Usage: node js_vhost_roundtrip.mjs ENDPOINT BUCKET KEY
// Credentials and region come from the environment; the SDK is loaded from
// S3TAP_NODE_MODULES. Every `*.localhost` name resolves to 127.0.0.1 in this
// process (RFC 6761 says it should; the machine's resolver does not), so
// `bucket.localhost` reaches a proxy on loopback. Prints "roundtrip ok".
import http from "node:http";
import dns from "node:dns";
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(join(process.env.S3TAP_NODE_MODULES, "noop.js"));
const {
  S3Client,
  CreateBucketCommand,
  PutObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  DeleteObjectCommand,
} = require("@aws-sdk/client-s3");
const { NodeHttpHandler } = require("@smithy/node-http-handler");

const lookup = (hostname, options, callback) =>
  dns.lookup(hostname.endsWith(".localhost") ? "127.0.0.1" : hostname, options, callback);

const [endpoint, bucket, key] = process.argv.slice(2);
const client = new S3Client({
  endpoint,
  region: process.env.AWS_REGION,
  forcePathStyle: false,
  maxAttempts: 1,
  credentials: {
    accessKeyId: process.env.AWS_ACCESS_KEY_ID,
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
  },
  requestHandler: new NodeHttpHandler({ httpAgent: new http.Agent({ lookup }) }),
});

try {
  const body = "virtual hosted from node " + "x".repeat(1000);
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const text = await got.Body.transformToString();
  if (text !== body) throw new Error(`read back ${text.length} bytes, sent ${body.length}`);
  const list = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
  const keys = (list.Contents ?? []).map((o) => o.Key);
  if (!keys.includes(key)) throw new Error(`${key} not listed: ${keys}`);
  await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
  console.log("roundtrip ok");
} catch (err) {
  console.error(`${err.name}: ${err.message} (HTTP ${err.$metadata?.httpStatusCode})`);
  process.exit(1);
}
