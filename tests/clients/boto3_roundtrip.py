"""Create a bucket, put an object, read it back and list it, with boto3.

Usage: boto3_roundtrip.py ENDPOINT BUCKET KEY FILE
Credentials and region come from the environment. Prints "roundtrip ok"
and exits 0 when the object read back equals the file.
"""

import sys

import boto3
from botocore.config import Config


def main() -> int:
    endpoint, bucket, key, path = sys.argv[1:5]
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
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
