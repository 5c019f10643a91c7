// PutObject of one file as a stream with the AWS JS SDK v3's defaults.
//
// Usage: node js_stream_put.mjs ENDPOINT BUCKET KEY FILE
// Credentials and region come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
// and AWS_REGION; the SDK is loaded from S3TAP_NODE_MODULES. Prints the
// response as JSON; exits 1 with the error on stderr when the request fails.
import { createReadStream, statSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

// ESM `import` ignores NODE_PATH, so resolve the SDK from the peers' prefix.
const require = createRequire(join(process.env.S3TAP_NODE_MODULES, "noop.js"));
const { S3Client, PutObjectCommand } = require("@aws-sdk/client-s3");

const [endpoint, bucket, key, file] = process.argv.slice(2);
const client = new S3Client({
  endpoint,
  region: process.env.AWS_REGION,
  forcePathStyle: true,
  maxAttempts: 1,
  credentials: {
    accessKeyId: process.env.AWS_ACCESS_KEY_ID,
    secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY,
  },
});

try {
  const resp = await client.send(
    new PutObjectCommand({
      Bucket: bucket,
      Key: key,
      Body: createReadStream(file),
      ContentLength: statSync(file).size,
    }),
  );
  delete resp.$metadata;
  console.log(JSON.stringify(resp));
} catch (err) {
  console.error(`${err.name}: ${err.message} (HTTP ${err.$metadata?.httpStatusCode})`);
  process.exit(1);
}
