"""The calls whose events are easy to miss, made with boto3's defaults.

Usage: boto3_completeness.py ENDPOINT BUCKET STEP
STEP is one of:
  setup          create BUCKET
  quiet-delete   put 50 objects under quiet/, then delete_objects them with
                 Quiet=True; report how many <Deleted> entries the answer
                 listed and how many errors
  multipart      a 3-part upload to mp/object (5 MiB, 5 MiB, 100 KiB), then
                 head_object; report the upstream's ETag and size
  copy           copy mp/object to mp/copy; report the copy's ETag and the
                 head_object of the copy
  failing-complete  a 1-part upload completed once (the test's upstream
                 double answers this completion 200 with <Error>); report
                 the error code the client got
Prints one JSON object. One attempt per call (no retries), path style.
Credentials and region come from the environment.
"""

import json
import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def main() -> int:
    endpoint, bucket, step = sys.argv[1:4]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(
            s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}
        ),
    )
    report = {}
    if step == "setup":
        s3.create_bucket(Bucket=bucket)
    elif step == "quiet-delete":
        keys = [f"quiet/{i:02d} &<key>.txt" for i in range(50)]
        for key in keys:
            s3.put_object(Bucket=bucket, Key=key, Body=b"x")
        answer = s3.delete_objects(
            Bucket=bucket,
            Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
        )
        report["keys"] = keys
        report["listed_deleted"] = len(answer.get("Deleted", []))
        report["errors"] = len(answer.get("Errors", []))
        left = s3.list_objects_v2(Bucket=bucket, Prefix="quiet/")
        report["left"] = left.get("KeyCount", 0)
    elif step == "multipart":
        key = "mp/object"
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        sizes = [5 * 1024 * 1024, 5 * 1024 * 1024, 100 * 1024]
        parts = []
        for number, size in enumerate(sizes, start=1):
            body = bytes([number]) * size
            etag = s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=body
            )["ETag"]
            parts.append({"ETag": etag, "PartNumber": number})
        done = s3.complete_multipart_upload(
            Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
        )
        head = s3.head_object(Bucket=bucket, Key=key)
        report["complete_etag"] = done["ETag"].strip('"')
        report["head_etag"] = head["ETag"].strip('"')
        report["size"] = head["ContentLength"]
        report["sum"] = sum(sizes)
    elif step == "copy":
        done = s3.copy_object(
            Bucket=bucket, Key="mp/copy", CopySource={"Bucket": bucket, "Key": "mp/object"}
        )
        head = s3.head_object(Bucket=bucket, Key="mp/copy")
        report["copy_etag"] = done["CopyObjectResult"]["ETag"].strip('"')
        report["head_etag"] = head["ETag"].strip('"')
        report["size"] = head["ContentLength"]
    elif step == "failing-complete":
        key = "mp/failing"
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        etag = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"y" * 1000
        )["ETag"]
        try:
            s3.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": 1}]},
            )
            report["error"] = None
        except ClientError as error:
            report["error"] = error.response["Error"]["Code"]
    else:
        print(f"unknown step {step}", file=sys.stderr)
        return 2
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
