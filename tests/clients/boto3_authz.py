"""Runs S3 operations with boto3 and prints one line per operation:
"<op> OK" or "<op> ERROR <Code>" (the first error of a multi-step one).

Usage: boto3_authz.py ENDPOINT BUCKET OP...
OP is one of:
  put:KEY            PutObject of a small body
  get:KEY            GetObject
  head:KEY           HeadObject
  list:PREFIX        ListObjectsV2 (no Prefix parameter when empty)
  delete:KEY         DeleteObject
  delete_objects:K1,K2  DeleteObjects
  multipart:KEY      CreateMultipartUpload, UploadPart, CompleteMultipartUpload
  copy:SRC:DST       CopyObject within BUCKET
Always exits 0; the lines say what happened.
"""

import sys

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError


def run(client, bucket, op):
    kind, _, arg = op.partition(":")
    if kind == "put":
        client.put_object(Bucket=bucket, Key=arg, Body=b"written by " + arg.encode())
    elif kind == "get":
        client.get_object(Bucket=bucket, Key=arg)["Body"].read()
    elif kind == "head":
        client.head_object(Bucket=bucket, Key=arg)
    elif kind == "list":
        if arg:
            client.list_objects_v2(Bucket=bucket, Prefix=arg)
        else:
            client.list_objects_v2(Bucket=bucket)
    elif kind == "delete":
        client.delete_object(Bucket=bucket, Key=arg)
    elif kind == "delete_objects":
        keys = [{"Key": k} for k in arg.split(",")]
        client.delete_objects(Bucket=bucket, Delete={"Objects": keys})
    elif kind == "multipart":
        upload = client.create_multipart_upload(Bucket=bucket, Key=arg)["UploadId"]
        part = client.upload_part(
            Bucket=bucket, Key=arg, UploadId=upload, PartNumber=1, Body=b"x" * 1024
        )
        client.complete_multipart_upload(
            Bucket=bucket,
            Key=arg,
            UploadId=upload,
            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
        )
    elif kind == "copy":
        src, _, dst = arg.partition(":")
        client.copy_object(Bucket=bucket, Key=dst, CopySource={"Bucket": bucket, "Key": src})
    else:
        raise SystemExit("unknown op " + op)


def main() -> int:
    client = boto3.client(
        "s3",
        endpoint_url=sys.argv[1],
        config=Config(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}),
    )
    bucket = sys.argv[2]
    for op in sys.argv[3:]:
        try:
            run(client, bucket, op)
            print(op + " OK")
        except ClientError as err:
            code = err.response["Error"]["Code"]
            # HEAD answers have no body: botocore names the status instead.
            print(op + " ERROR " + code)
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
