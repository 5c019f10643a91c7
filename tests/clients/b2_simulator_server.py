"""An HTTP front for b2sdk's own B2 API simulator (`RawSimulator`), the
upstream of the B2 native API tests: no open-source B2 server exists, so the
SDK's in-process simulator answers, and this file only translates HTTP to its
method calls and back.

Usage: b2_simulator_server.py PORT_FILE
Prints nothing; writes {"port", "key_id", "key"} as JSON to PORT_FILE once
listening. GET /_sim/stats answers what the test checks upstream: uploads
stored and uploads whose body arrived short (aborted by the proxy), and the
files each bucket holds.

Faithful to B2 where the tests look: the JSON error shape
({"status","code","message"}), the v2 (flat) and v3/v4 (apiInfo.storageApi)
answer shapes of b2_authorize_account, the upload URL with its own token,
X-Bz-* headers. The simulator's fake hosts (api.example.com, ...) are
replaced by this server's address in every answer.
"""

import hashlib
import io
import json
import re
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from b2sdk._internal.raw_simulator import BucketSimulator, RawSimulator
from b2sdk._internal.exception import (
    B2Error,
    FileOrBucketNotFound,
    ResourceNotFound,
    Unauthorized,
)
from b2sdk._internal.raw_api import MetadataDirectiveMode

SIM = RawSimulator()
# Parts of 64 KiB (the simulator's default is 200 bytes): a large file of a
# few hundred KiB then has a few parts, not thousands.
SIM.MIN_PART_SIZE = 64 * 1024
BucketSimulator.MAX_SIMPLE_COPY_SIZE = SIM.MIN_PART_SIZE
KEY_ID, KEY = SIM.create_account()
LOCK = threading.Lock()
STATS = {"uploads_stored": 0, "uploads_aborted": 0, "uploads_unverified": 0, "requests": 0}
SIM_UPLOAD = "https://upload.example.com/"


def status_of(error):
    if isinstance(error, Unauthorized):
        return 401
    if isinstance(error, (ResourceNotFound, FileOrBucketNotFound)):
        return 404
    return 400


def api_call(name, token, p):
    """The simulator method for one API operation, with B2's JSON fields."""
    api = SIM.API_URL
    if name == "b2_create_bucket":
        return SIM.create_bucket(
            api, token, p["accountId"], p["bucketName"], p["bucketType"],
            bucket_info=p.get("bucketInfo"),
        )
    if name == "b2_list_buckets":
        return SIM.list_buckets(
            api, token, p["accountId"], bucket_id=p.get("bucketId"),
            bucket_name=p.get("bucketName"),
        )
    if name == "b2_get_upload_url":
        return SIM.get_upload_url(api, token, p["bucketId"])
    if name == "b2_get_upload_part_url":
        return SIM.get_upload_part_url(api, token, p["fileId"])
    if name == "b2_start_large_file":
        return SIM.start_large_file(
            api, token, p["bucketId"], p["fileName"], p["contentType"],
            p.get("fileInfo") or {},
        )
    if name == "b2_finish_large_file":
        return SIM.finish_large_file(api, token, p["fileId"], p["partSha1Array"])
    if name == "b2_cancel_large_file":
        return SIM.cancel_large_file(api, token, p["fileId"])
    if name == "b2_list_parts":
        return SIM.list_parts(
            api, token, p["fileId"], p.get("startPartNumber"), p.get("maxPartCount")
        )
    if name == "b2_list_unfinished_large_files":
        return SIM.list_unfinished_large_files(
            api, token, p["bucketId"], start_file_id=p.get("startFileId"),
            max_file_count=p.get("maxFileCount"), prefix=p.get("namePrefix"),
        )
    if name == "b2_list_file_names":
        return SIM.list_file_names(
            api, token, p["bucketId"], start_file_name=p.get("startFileName"),
            max_file_count=p.get("maxFileCount"), prefix=p.get("prefix"),
        )
    if name == "b2_list_file_versions":
        return SIM.list_file_versions(
            api, token, p["bucketId"], start_file_name=p.get("startFileName"),
            start_file_id=p.get("startFileId"), max_file_count=p.get("maxFileCount"),
            prefix=p.get("prefix"),
        )
    if name == "b2_copy_file":
        directive = p.get("metadataDirective")
        result = SIM.copy_file(
            api, token, p["sourceFileId"], p["fileName"],
            metadata_directive=MetadataDirectiveMode[directive] if directive else None,
            content_type=p.get("contentType"), file_info=p.get("fileInfo"),
            destination_bucket_id=p.get("destinationBucketId"),
        )
        # The simulator does not index a copy by id (it does uploads), so
        # b2_delete_file_version of a copy would not find it.
        SIM.file_id_to_bucket_id[result["fileId"]] = result["bucketId"]
        return result
    if name == "b2_hide_file":
        return SIM.hide_file(api, token, p["bucketId"], p["fileName"])
    if name == "b2_delete_file_version":
        return SIM.delete_file_version(api, token, p["fileId"], p["fileName"])
    if name == "b2_get_file_info":
        return SIM.get_file_info_by_id(api, token, p["fileId"])
    if name == "b2_get_download_authorization":
        return SIM.get_download_authorization(
            api, token, p["bucketId"], p["fileNamePrefix"], p["validDurationInSeconds"]
        )
    raise KeyError(name)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def base(self):
        return "http://" + self.headers["Host"]

    def here(self, value):
        """The simulator's fake hosts replaced by this server."""
        text = json.dumps(value, default=lambda o: sorted(o) if isinstance(o, (set, frozenset)) else str(o))
        base = self.base()
        for fake in (SIM.API_URL, SIM.DOWNLOAD_URL, SIM.S3_API_URL):
            text = text.replace(fake, base)
        text = text.replace(SIM_UPLOAD + "part/", base + "/upload_part/")
        return text.replace(SIM_UPLOAD, base + "/upload/")

    def answer(self, status, document=None, headers=None, body=None):
        if body is None:
            body = self.here(document).encode() if document is not None else b""
        self.send_response(status)
        for name, value in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(name, value)
        if "content-length" not in {k.lower() for k in (headers or {})}:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, error):
        status = status_of(error)
        code = getattr(error, "code", None) or ("unauthorized" if status == 401 else
                                                 "not_found" if status == 404 else "bad_request")
        self.answer(status, {"status": status, "code": code, "message": str(error)})

    def read_exactly(self):
        """The body as Content-Length says, or None when it ended short
        (the sender aborted)."""
        length = int(self.headers.get("Content-Length", "0"))
        chunks, got = [], 0
        while got < length:
            try:
                chunk = self.rfile.read(min(65536, length - got))
            except (ConnectionError, OSError):
                chunk = b""
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def do_GET(self):
        with LOCK:
            STATS["requests"] += 1
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_sim/stats":
            files = {}
            for name, bucket in SIM.bucket_name_to_bucket.items():
                files[name] = sorted(f.name for f in bucket.file_id_to_file.values()
                                     if f.action == "upload")
            return self.answer(200, dict(STATS, files=files))
        token = self.headers.get("Authorization")
        if token is None:
            token = urllib.parse.parse_qs(url.query).get("Authorization", [None])[0]
        range_ = None
        match = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
        if match:
            range_ = (int(match.group(1)), int(match.group(2)))
        sim_url = SIM.DOWNLOAD_URL + self.path.split("&Authorization=")[0].split("?Authorization=")[0]
        try:
            with LOCK, SIM.download_file_from_url(token, sim_url, range_=range_) as response:
                body = b"".join(response.iter_content(1 << 20))
                headers = dict(response.headers)
        except B2Error as error:
            return self.error(error)
        if range_ is not None:
            headers["Content-Range"] = "bytes %d-%d/*" % (range_[0], range_[0] + len(body) - 1)
        self.answer(206 if range_ else 200, headers=headers, body=body)

    do_HEAD = do_GET

    def do_POST(self):
        with LOCK:
            STATS["requests"] += 1
        path = urllib.parse.urlsplit(self.path).path
        token = self.headers.get("Authorization", "")
        if path.startswith("/upload/") or path.startswith("/upload_part/"):
            return self.upload(path, token)
        body = self.read_exactly()
        if body is None:
            return
        match = re.fullmatch(r"/b2api/(v\d+)/(b2_\w+)", path)
        if not match:
            return self.answer(404, {"status": 404, "code": "not_found", "message": path})
        version, name = match.groups()
        try:
            with LOCK:
                if name == "b2_authorize_account":
                    import base64
                    key_id, key = base64.b64decode(token.split(" ", 1)[1]).decode().split(":", 1)
                    result = SIM.authorize_account(SIM.API_URL, key_id, key)
                    # The simulator answers in v4's shape (allowed.buckets);
                    # v3 names one bucket in storageApi, v1/v2 are flat.
                    storage = result["apiInfo"]["storageApi"]
                    allowed = dict(storage["allowed"])
                    buckets = allowed.pop("buckets", None) or []
                    allowed["bucketId"] = buckets[0]["id"] if buckets else None
                    allowed["bucketName"] = buckets[0]["name"] if buckets else None
                    if version == "v3":
                        storage.pop("allowed")
                        storage.update(allowed)
                    elif version in ("v1", "v2"):
                        result = {
                            "accountId": result["accountId"],
                            "authorizationToken": result["authorizationToken"],
                            "apiUrl": storage["apiUrl"],
                            "downloadUrl": storage["downloadUrl"],
                            "s3ApiUrl": storage["s3ApiUrl"],
                            "recommendedPartSize": storage["recommendedPartSize"],
                            "absoluteMinimumPartSize": storage["absoluteMinimumPartSize"],
                            "allowed": allowed,
                        }
                else:
                    params = json.loads(body or b"{}")
                    result = api_call(name, token, params)
        except B2Error as error:
            return self.error(error)
        except KeyError as error:
            return self.answer(400, {"status": 400, "code": "bad_request",
                                     "message": "unsupported: %s" % error})
        self.answer(200, result)

    def upload(self, path, token):
        # The upload token is the simulator's upload URL, which answers
        # carried with this server's address: back to the simulator's.
        base = self.base()
        token = token.replace(base + "/upload_part/", SIM_UPLOAD + "part/")
        token = token.replace(base + "/upload/", SIM_UPLOAD)
        body = self.read_exactly()
        if body is None:
            # Short body: the sender aborted. Nothing reaches the simulator.
            with LOCK:
                STATS["uploads_aborted"] += 1
            self.close_connection = True
            return
        h = self.headers
        sha1 = h["X-Bz-Content-Sha1"]
        # B2 takes `do_not_verify` and stores the file with the checksum
        # "unverified:<its SHA-1>"; b2sdk's simulator refuses the value, so
        # the adapter does what B2 documents: hashes the body it got.
        unverified = sha1.lower() == "do_not_verify"
        if unverified:
            sha1 = hashlib.sha1(body).hexdigest()
        try:
            with LOCK:
                if path.startswith("/upload_part/"):
                    sim_url = SIM_UPLOAD + "part/" + path[len("/upload_part/"):]
                    result = SIM.upload_part(
                        sim_url, token, int(h["X-Bz-Part-Number"]), len(body),
                        sha1, io.BytesIO(body),
                    )
                else:
                    sim_url = SIM_UPLOAD + path[len("/upload/"):]
                    info = {k[len("X-Bz-Info-"):]: urllib.parse.unquote(v)
                            for k, v in h.items() if k.lower().startswith("x-bz-info-")}
                    result = SIM.upload_file(
                        sim_url, token, urllib.parse.unquote_plus(h["X-Bz-File-Name"]),
                        len(body), h.get("Content-Type", "b2/x-auto"),
                        sha1, info, io.BytesIO(body),
                    )
                STATS["uploads_stored"] += 1
                if unverified:
                    STATS["uploads_unverified"] += 1
        except B2Error as error:
            return self.error(error)
        if unverified:
            result = dict(result, contentSha1="unverified:" + result["contentSha1"])
        self.answer(200, result)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with open(sys.argv[1] + ".tmp", "w") as f:
        json.dump({"port": server.server_address[1], "key_id": KEY_ID, "key": KEY}, f)
    import os
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
