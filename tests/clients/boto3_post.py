"""Browser form uploads (presigned POST): boto3 writes the form, an HTTP
client posts it as a browser does.

Usage: boto3_post.py ENDPOINT CASES_JSON
       boto3_post.py get ENDPOINT BUCKET KEY   (prints size, sha256,
       content type and metadata of the stored object, read with boto3)
       boto3_post.py mkbucket ENDPOINT BUCKET
Credentials and region come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
AWS_DEFAULT_REGION. CASES_JSON is a list of cases, each with:

  name        printed back
  bucket, key, file (path), filename
  fields, conditions, expires   passed to generate_presigned_post
  tamper      optional dict of fields to set after signing (null removes)
  extra       optional dict of fields added after signing
  sender      "requests" (default: requests' multipart, as a browser form,
              the file part last and no length on it), or "stream": the form
              written by hand and streamed from the file in 1 MiB pieces
              with a Content-Length for the whole request, as a browser does
              for a big file
  part_length optional: with "stream", a Content-Length header on the file
              part (its true length, or this number when it is an int)
  creds       optional [access_key, secret_key] to sign with instead

Prints one JSON line per case: name, status, the error code from the XML,
the Location header and the body (text, cut at 2000 characters).
"""

import hashlib
import http.client
import json
import os
import sys
import urllib.parse
import uuid

import boto3
import requests
from botocore.config import Config


def client_for(endpoint, creds):
    kwargs = {}
    if creds:
        kwargs = {"aws_access_key_id": creds[0], "aws_secret_access_key": creds[1]}
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        **kwargs,
    )


def streamed_form(url, fields, path, filename, part_length):
    """The form as bytes around the file, streamed with a total length."""
    boundary = "----s3tapform" + uuid.uuid4().hex
    head = b""
    for name, value in fields.items():
        head += (
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
            f"{value}\r\n"
        ).encode()
    size = os.path.getsize(path)
    part_headers = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
        f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n"
    )
    if part_length is not None:
        stated = size if part_length is True else part_length
        part_headers += f"Content-Length: {stated}\r\n"
    head += (part_headers + "\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body():
        yield head
        with open(path, "rb") as f:
            while True:
                piece = f.read(1 << 20)
                if not piece:
                    break
                yield piece
        yield tail

    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "Content-Length": str(len(head) + size + len(tail)),
    }
    # http.client, not requests: requests adds Transfer-Encoding: chunked to
    # a generator body even beside a Content-Length, which no browser does.
    target = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=600)
    try:
        conn.request(
            "POST", target.path or "/", body=body(), headers=headers, encode_chunked=False
        )
    except (BrokenPipeError, ConnectionResetError):
        # The server answered early and closed, as S3 does for a refused
        # upload; its answer is already here to be read.
        pass
    resp = conn.getresponse()
    text = resp.read().decode("utf-8", "replace")
    conn.close()
    return Answer(resp.status, resp.headers, text)


class Answer:
    """The parts of an answer the report needs, as requests names them."""

    def __init__(self, status, headers, text):
        self.status_code = status
        self.headers = headers
        self.text = text


def run(endpoint, case):
    client = client_for(endpoint, case.get("creds"))
    post = client.generate_presigned_post(
        Bucket=case["bucket"],
        Key=case["key"],
        Fields=case.get("fields") or None,
        Conditions=case.get("conditions") or None,
        ExpiresIn=case.get("expires", 600),
    )
    fields = dict(post["fields"])
    for name, value in (case.get("tamper") or {}).items():
        if value is None:
            fields.pop(name, None)
        else:
            fields[name] = value
    fields.update(case.get("extra") or {})
    filename = case.get("filename", "upload.bin")
    try:
        if case.get("sender", "requests") == "stream":
            resp = streamed_form(
                post["url"], fields, case["file"], filename, case.get("part_length")
            )
        else:
            with open(case["file"], "rb") as f:
                resp = requests.post(
                    post["url"],
                    data=fields,
                    files={"file": (filename, f)},
                    allow_redirects=False,
                )
    except (requests.RequestException, OSError, http.client.HTTPException) as err:
        # The proxy may answer and close while a refused file is still
        # being sent; the test reads the reason from the proxy's log.
        return {"name": case["name"], "status": 0, "error": str(err)}
    code = None
    if "<Code>" in resp.text:
        code = resp.text.split("<Code>", 1)[1].split("</Code>", 1)[0]
    return {
        "name": case["name"],
        "status": resp.status_code,
        "code": code,
        "location": resp.headers.get("Location"),
        "etag": resp.headers.get("ETag"),
        "body": resp.text[:2000],
    }


def get(endpoint, bucket, key):
    resp = client_for(endpoint, None).get_object(Bucket=bucket, Key=key)
    digest = hashlib.sha256()
    size = 0
    for piece in resp["Body"].iter_chunks(1 << 20):
        digest.update(piece)
        size += len(piece)
    print(json.dumps({
        "size": size,
        "sha256": digest.hexdigest(),
        "content_type": resp.get("ContentType"),
        "metadata": resp.get("Metadata"),
    }))
    return 0


def main() -> int:
    if sys.argv[1] == "get":
        return get(*sys.argv[2:5])
    if sys.argv[1] == "mkbucket":
        client_for(sys.argv[2], None).create_bucket(Bucket=sys.argv[3])
        return 0
    endpoint, cases = sys.argv[1], json.loads(sys.argv[2])
    for case in cases:
        print(json.dumps(run(endpoint, case)), flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # report any client error as a plain failure
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
