"""boto3 against a proxy that compresses uploads: the calls a user makes.

Usage: transform_boto3.py ENDPOINT COMMAND BUCKET KEY [FILE] [RANGE]
  put FILE        put_object of the file (one request)
  upload FILE     upload_file (boto3's managed transfer: multipart above 8 MiB)
  get FILE        get_object, body written to FILE
  download FILE   download_file (ranged parallel GETs above 8 MiB)
  range FILE R    get_object with Range R, body written to FILE
  head            head_object
Credentials and region come from the environment. Prints the response's
headers of interest as JSON; exits 1 with the error on stderr on failure.
"""

import json
import sys

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config


def main() -> int:
    endpoint, command, bucket, key = sys.argv[1:5]
    rest = sys.argv[5:]
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"total_max_attempts": 1},
        ),
    )
    out = {}
    if command == "put":
        with open(rest[0], "rb") as body:
            resp = client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="text/plain")
        out["ETag"] = resp["ETag"]
    elif command == "upload":
        client.upload_file(rest[0], bucket, key, Config=TransferConfig())
    elif command in ("get", "range"):
        args = {"Bucket": bucket, "Key": key}
        if command == "range":
            args["Range"] = rest[1]
        resp = client.get_object(**args)
        with open(rest[0], "wb") as f:
            for chunk in resp["Body"].iter_chunks(1 << 20):
                f.write(chunk)
        out = {
            "ContentLength": resp["ContentLength"],
            "ContentRange": resp.get("ContentRange"),
            "ContentType": resp.get("ContentType"),
            "Metadata": resp.get("Metadata", {}),
            "ETag": resp["ETag"],
        }
    elif command == "download":
        client.download_file(bucket, key, rest[0], Config=TransferConfig())
    elif command == "head":
        resp = client.head_object(Bucket=bucket, Key=key)
        out = {
            "ContentLength": resp["ContentLength"],
            "ContentType": resp.get("ContentType"),
            "Metadata": resp.get("Metadata", {}),
            "ETag": resp["ETag"],
        }
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(out, default=str))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # report any client error as a plain failure
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
