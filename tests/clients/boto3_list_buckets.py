"""ListBuckets with boto3; prints the bucket names, or the error code.

Usage: boto3_list_buckets.py ENDPOINT
Exits 0 on success, 1 with "ERROR <Code>" on stdout when S3 refuses.
"""

import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main() -> int:
    client = boto3.client(
        "s3",
        endpoint_url=sys.argv[1],
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )
    try:
        names = [b["Name"] for b in client.list_buckets()["Buckets"]]
    except ClientError as err:
        print("ERROR " + err.response["Error"]["Code"])
        return 1
    print(" ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
