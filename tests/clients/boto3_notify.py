"""The boto3 half of the notification end-to-end test.

Usage: boto3_notify.py ENDPOINT BUCKET MULTIPART_KEY DELETE_PREFIX COUNT
An explicit multipart upload (create, three upload_part calls of 5 MiB,
5 MiB and 1 KiB, complete) to MULTIPART_KEY; then COUNT small put_object
calls under DELETE_PREFIX and one delete_objects of all of them. Prints one
JSON object: the multipart object's size and the keys delete_objects
reported deleted. Credentials and region come from the environment.
"""

import json
import sys

import boto3
from botocore.config import Config


def main() -> int:
    endpoint, bucket, mp_key, prefix, count = sys.argv[1:6]
    count = int(count)
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}
        ),
    )
    sizes = [5 * 1024 * 1024, 5 * 1024 * 1024, 1024]
    upload = s3.create_multipart_upload(Bucket=bucket, Key=mp_key)
    parts = []
    for number, size in enumerate(sizes, start=1):
        body = bytes([number]) * size
        part = s3.upload_part(
            Bucket=bucket,
            Key=mp_key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=body,
        )
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=mp_key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    head = s3.head_object(Bucket=bucket, Key=mp_key)

    keys = [f"{prefix}k{i:03}.txt" for i in range(count)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    deleted = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": key} for key in keys], "Quiet": False},
    )
    errors = deleted.get("Errors", [])
    if errors:
        print(json.dumps({"errors": errors}))
        return 1
    print(
        json.dumps(
            {
                "multipart_size": head["ContentLength"],
                "deleted": sorted(d["Key"] for d in deleted.get("Deleted", [])),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
