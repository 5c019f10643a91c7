"""Backblaze's own SDK (b2sdk) through the s3tap B2 native API proxy.

Usage: b2sdk_native.py PROXY_URL KEY_ID KEY WORK_DIR
Runs every native operation the tests check, through b2sdk's public API
(and its raw session for the refused uploads), and prints one JSON object:
what each step returned, and every URL b2sdk sent a request to (all must be
the proxy's). Exits non-zero with a traceback on any unexpected failure.
"""

import base64
import hashlib
import io
import json
import os
import sys

import requests
from b2sdk import v2 as sdk_v2
from b2sdk.v3 import B2Api, InMemoryAccountInfo

PROXY, KEY_ID, KEY, WORK = sys.argv[1:5]

# Every URL b2sdk asks for, to prove it never went around the proxy.
SEEN = []
_request = requests.Session.request


def recording_request(self, method, url, *args, **kwargs):
    SEEN.append(url)
    return _request(self, method, url, *args, **kwargs)


requests.Session.request = recording_request

out = {}
info = InMemoryAccountInfo()
api = B2Api(info)
api.authorize_account(realm=PROXY, application_key_id=KEY_ID, application_key=KEY)
out["api_url"] = info.get_api_url()
out["download_url"] = info.get_download_url()
out["s3_api_url"] = info.get_s3_api_url()

bucket = api.create_bucket("photos", "allPrivate")
out["bucket_id"] = bucket.id_

# A small file whose SHA-1 b2sdk knows: sent in the header.
small = os.urandom(1000)
version = bucket.upload_bytes(small, "small.bin", content_type="application/octet-stream")
out["small"] = {"id": version.id_, "sha1": version.content_sha1, "size": version.size}

# A stream whose SHA-1 b2sdk does not know beforehand: hex_digits_at_end.
streamed = os.urandom(3000)
version = bucket.upload_unbound_stream(io.BytesIO(streamed), "streamed.bin")
out["streamed"] = {"id": version.id_, "sha1": version.content_sha1, "size": version.size}

# A large file: start, parts, finish (the simulator's part size is small).
large = os.urandom(300 * 1024)
path = os.path.join(WORK, "large.bin")
with open(path, "wb") as f:
    f.write(large)
version = bucket.upload_local_file(path, "large.bin")
out["large"] = {"id": version.id_, "size": version.size}

# Downloads by name and by id, byte-exact.
got = io.BytesIO()
bucket.download_file_by_name("small.bin").save(got)
out["by_name_ok"] = got.getvalue() == small
got = io.BytesIO()
api.download_file_by_id(out["large"]["id"]).save(got)
out["by_id_ok"] = got.getvalue() == large

# Copy, hide, delete a version.
copied = bucket.copy(out["small"]["id"], "copy.bin")
out["copy"] = {"id": copied.id_}
hidden = bucket.hide_file("streamed.bin")
out["hide"] = {"id": hidden.id_, "action": hidden.action}
bucket.delete_file_version(out["copy"]["id"], "copy.bin")
out["listing"] = sorted(fv.file_name for fv, _ in bucket.ls(latest_only=True))

# Refused uploads, sent by hand on an upload URL the proxy handed out: a
# wrong SHA-1 in the header, and wrong hex digits at the end.
session = api.session
upload = session.get_upload_url(bucket.id_)
out["upload_url"] = upload["uploadUrl"]
refused = []
# Large enough to arrive in many frames: the proxy passes the first ones on
# while it hashes, so the upstream sees a body begun and then aborted.
body = os.urandom(4 * 1024 * 1024)
for name, sha1, data in [
    ("bad-header.bin", hashlib.sha1(b"something else").hexdigest(), body),
    ("bad-at-end.bin", "hex_digits_at_end", body + hashlib.sha1(b"other").hexdigest().encode()),
]:
    response = _request(
        requests.Session(), "POST", upload["uploadUrl"], data=data,
        headers={
            "Authorization": upload["authorizationToken"],
            "X-Bz-File-Name": name,
            "Content-Type": "b2/x-auto",
            "X-Bz-Content-Sha1": sha1,
            "Content-Length": str(len(data)),
        },
    )
    refused.append({"name": name, "status": response.status_code, "body": response.json()})
out["refused"] = refused
out["listing_after_refused"] = sorted(fv.file_name for fv, _ in bucket.ls(latest_only=True))
# do_not_verify: nothing for the proxy to check; body and header go on as
# they came (B2 stores the file with an "unverified:" checksum).
upload = session.get_upload_url(bucket.id_)
data = os.urandom(100_000)
response = _request(
    requests.Session(), "POST", upload["uploadUrl"], data=data,
    headers={
        "Authorization": upload["authorizationToken"],
        "X-Bz-File-Name": "unverified.bin",
        "Content-Type": "b2/x-auto",
        "X-Bz-Content-Sha1": "do_not_verify",
        "Content-Length": str(len(data)),
    },
)
got = io.BytesIO()
bucket.download_file_by_name("unverified.bin").save(got)
out["unverified"] = {
    "status": response.status_code,
    "content_sha1": response.json().get("contentSha1"),
    "sha1": hashlib.sha1(data).hexdigest(),
    "roundtrip": got.getvalue() == data,
}
# b2sdk's v2 interface speaks API v3 (one bucket in apiInfo.storageApi).
info3 = sdk_v2.InMemoryAccountInfo()
api3 = sdk_v2.B2Api(info3)
api3.authorize_account(realm=PROXY, application_key_id=KEY_ID, application_key=KEY)
out["v3"] = {
    "api_url": info3.get_api_url(),
    "download_url": info3.get_download_url(),
    "s3_api_url": info3.get_s3_api_url(),
}
bucket3 = api3.get_bucket_by_name("photos")
bucket3.upload_bytes(b"through API v3", "v3.txt")
got = io.BytesIO()
bucket3.download_file_by_name("v3.txt").save(got)
out["v3"]["roundtrip"] = got.getvalue() == b"through API v3"

# API v2's flat answer: no b2sdk interface speaks it any more, so by hand.
basic = base64.b64encode(("%s:%s" % (KEY_ID, KEY)).encode()).decode()
answer = _request(requests.Session(), "POST", PROXY + "/b2api/v2/b2_authorize_account",
                  headers={"Authorization": "Basic " + basic}, data=b"{}").json()
out["v2"] = {k: answer.get(k) for k in ("apiUrl", "downloadUrl", "s3ApiUrl")}
listed = _request(requests.Session(), "POST", answer["apiUrl"] + "/b2api/v2/b2_list_buckets",
                  headers={"Authorization": answer["authorizationToken"]},
                  data=json.dumps({"accountId": answer["accountId"]}))
out["v2_list_buckets_status"] = listed.status_code

out["seen"] = SEEN
print(json.dumps(out))
