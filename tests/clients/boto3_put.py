"""PutObject of one file with boto3's defaults, as a real client would.

Usage: boto3_put.py ENDPOINT BUCKET KEY FILE
Credentials and region come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
AWS_DEFAULT_REGION; a private CA from AWS_CA_BUNDLE. Prints the response as
JSON; exits 1 with the error on stderr when the request fails.
"""

import json
import sys

import boto3
from botocore.config import Config


def main() -> int:
    endpoint, bucket, key, path = sys.argv[1:5]
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            s3={"addressing_style": "path"},
            # One attempt: a rejected request must show as a failure at once.
            retries={"total_max_attempts": 1},
        ),
    )
    with open(path, "rb") as body:
        resp = client.put_object(Bucket=bucket, Key=key, Body=body)
    resp.pop("ResponseMetadata", None)
    print(json.dumps(resp, default=str))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # report any client error as a plain failure
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
