"""The everyday S3 calls with boto3's defaults, reported for comparison.

Usage: boto3_ops.py ENDPOINT BUCKET PREFIX FILE
Puts FILE under PREFIX, then head, GET, range GET, copy, list (flat and
with a delimiter), delete, and the 404s after it. Prints one JSON list with
what each call returned that must not depend on the path taken (status,
lengths, ETags, content ranges, body digests, keys relative to PREFIX);
per-request values (dates, request ids) are left out. Credentials and region
come from the environment, a private CA from AWS_CA_BUNDLE.

Upstream quirks the report simply carries (they are the same on every path):
s3s-fs lists objects without ETags, and lists the key "obj one+\u00fc.bin"
as "obj one \u00fc.bin".
"""

import hashlib
import json
import sys
import traceback

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main() -> int:
    endpoint, bucket, prefix, path = sys.argv[1:5]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}
        ),
    )
    key = prefix + "obj one+\u00fc.bin"
    copy_key = prefix + "copy of obj.bin"
    nested_key = prefix + "dir/nested.txt"
    report = []

    def rel(k):
        assert k.startswith(prefix), k
        return k[len(prefix):]

    def call(op, fn, pick):
        try:
            resp = fn()
        except ClientError as err:
            report.append(
                {
                    "op": op,
                    "status": err.response["ResponseMetadata"]["HTTPStatusCode"],
                    "code": err.response["Error"]["Code"],
                }
            )
            return None
        entry = {"op": op, "status": resp["ResponseMetadata"]["HTTPStatusCode"]}
        entry.update(pick(resp))
        report.append(entry)
        return resp

    def body_digest(resp):
        data = resp["Body"].read()
        return {
            "length": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "content_length": resp.get("ContentLength"),
            "etag": resp.get("ETag"),
            "content_range": resp.get("ContentRange"),
        }

    def listing(resp):
        return {
            "keys": [[rel(o["Key"]), o["Size"], o.get("ETag")] for o in resp.get("Contents", [])],
            "prefixes": [rel(p["Prefix"]) for p in resp.get("CommonPrefixes", [])],
            "count": resp["KeyCount"],
        }

    with open(path, "rb") as body:
        call("put", lambda: s3.put_object(Bucket=bucket, Key=key, Body=body),
             lambda r: {"etag": r.get("ETag")})
    call("put nested", lambda: s3.put_object(Bucket=bucket, Key=nested_key, Body=b"nested\n"),
         lambda r: {"etag": r.get("ETag")})
    call("head", lambda: s3.head_object(Bucket=bucket, Key=key),
         lambda r: {"content_length": r.get("ContentLength"), "etag": r.get("ETag")})
    call("get", lambda: s3.get_object(Bucket=bucket, Key=key), body_digest)
    call("range get", lambda: s3.get_object(Bucket=bucket, Key=key, Range="bytes=100-1123"),
         body_digest)
    call("suffix range get", lambda: s3.get_object(Bucket=bucket, Key=key, Range="bytes=-500"),
         body_digest)
    call("copy",
         lambda: s3.copy_object(Bucket=bucket, Key=copy_key,
                                CopySource={"Bucket": bucket, "Key": key}),
         lambda r: {"etag": r.get("CopyObjectResult", {}).get("ETag")})
    call("get copy", lambda: s3.get_object(Bucket=bucket, Key=copy_key), body_digest)
    call("list", lambda: s3.list_objects_v2(Bucket=bucket, Prefix=prefix), listing)
    call("list delimited",
         lambda: s3.list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/"), listing)
    call("list v1", lambda: s3.list_objects(Bucket=bucket, Prefix=prefix),
         lambda r: {"keys": [[rel(o["Key"]), o["Size"], o.get("ETag")] for o in r.get("Contents", [])]})
    for k in (key, copy_key, nested_key):
        call("delete " + rel(k), lambda: s3.delete_object(Bucket=bucket, Key=k), lambda r: {})
    call("head deleted", lambda: s3.head_object(Bucket=bucket, Key=key), lambda r: {})
    call("get deleted", lambda: s3.get_object(Bucket=bucket, Key=key), lambda r: {})
    call("list after delete", lambda: s3.list_objects_v2(Bucket=bucket, Prefix=prefix), listing)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # any failure: the traceback says which call
        traceback.print_exc()
        sys.exit(1)
