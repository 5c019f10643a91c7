"""Create a bucket, put an object, read it back and list it, with boto3.

Usage: boto3_roundtrip.py ENDPOINT BUCKET KEY FILE
Credentials and region come from the environment, a private CA from
AWS_CA_BUNDLE. Prints "roundtrip ok" and exits 0 when the object read back
equals the file.

S3TAP_ADDRESSING=virtual switches boto3 to virtual-hosted buckets
(`bucket.host`); S3TAP_RESOLVE_LOCALHOST=1 makes every `*.localhost` name
resolve to 127.0.0.1 in this process (RFC 6761 says it should; the machine's
resolver does not), so `bucket.localhost` reaches a proxy on loopback.
"""

import os
import socket
import sys

import boto3
from botocore.config import Config


def resolve_localhost_names() -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(".localhost"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    socket.getaddrinfo = getaddrinfo


def main() -> int:
    endpoint, bucket, key, path = sys.argv[1:5]
    if os.environ.get("S3TAP_RESOLVE_LOCALHOST") == "1":
        resolve_localhost_names()
    addressing = os.environ.get("S3TAP_ADDRESSING", "path")
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(s3={"addressing_style": addressing}, retries={"total_max_attempts": 1}),
    )
    with open(path, "rb") as f:
        data = f.read()
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key=key, Body=data)
    got = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    if got != data:
        print(f"object differs: sent {len(data)} bytes, got {len(got)}", file=sys.stderr)
        return 1
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    if key not in keys:
        print(f"{key} not listed: {keys}", file=sys.stderr)
        return 1
    print("roundtrip ok")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # report any client error as a plain failure
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
