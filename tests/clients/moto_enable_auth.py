"""Turns on moto server's signature checking with one allow-all IAM key.

Usage: moto_enable_auth.py ENDPOINT
While moto still accepts anything: creates an IAM user, an allow-all user
policy and an access key; then POST /moto-api/reset-auth with 0 (no more
unauthenticated actions). Checks that a wrong secret now gets
SignatureDoesNotMatch and the right one works, then prints the key as JSON.
"""

import json
import sys
import urllib.request

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}


def s3(endpoint, key_id, secret):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        config=Config(
            s3={"addressing_style": "path"}, retries={"total_max_attempts": 1}
        ),
    )


def main() -> int:
    endpoint = sys.argv[1]
    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName="s3tap-e2e")
    iam.put_user_policy(
        UserName="s3tap-e2e", PolicyName="allow-all", PolicyDocument=json.dumps(POLICY)
    )
    key = iam.create_access_key(UserName="s3tap-e2e")["AccessKey"]

    # moto reads the body as a number; Flask would eat a form-encoded body.
    request = urllib.request.Request(
        endpoint + "/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(request) as response:
        print("reset-auth:", response.read().decode(), file=sys.stderr)

    try:
        s3(endpoint, key["AccessKeyId"], key["SecretAccessKey"] + "x").list_buckets()
        print("moto accepted a wrong secret: auth is not on", file=sys.stderr)
        return 1
    except ClientError as err:
        code = err.response["Error"]["Code"]
        if code != "SignatureDoesNotMatch":
            print(f"wrong secret gave {code}, not SignatureDoesNotMatch", file=sys.stderr)
            return 1
    s3(endpoint, key["AccessKeyId"], key["SecretAccessKey"]).list_buckets()
    print(json.dumps({"access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"]}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # any failure is a setup failure
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
