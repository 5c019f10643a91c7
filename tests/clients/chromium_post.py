"""A real browser form upload: boto3 writes the presigned POST, headless
Chromium submits it from an HTML page as a user's browser would.

Usage: chromium_post.py ENDPOINT BUCKET KEY FILE CHROMIUM
Credentials and region come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
AWS_DEFAULT_REGION. A small HTTP server on loopback serves the page (hidden
fields from boto3, a file input given FILE's bytes through the DataTransfer
API, submitted by script) and the success_action_redirect target. Prints
the redirect's query (bucket, key, etag) as JSON once the browser lands
there; exits 1 if it does not within a minute.
"""

import base64
import html
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.parse

import boto3
from botocore.config import Config


def main() -> int:
    endpoint, bucket, key, path, chromium = sys.argv[1:6]
    with open(path, "rb") as f:
        data = f.read()
    landed = {}
    arrived = threading.Event()
    page = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            target = urllib.parse.urlsplit(self.path)
            if target.path == "/form.html":
                body = page["html"].encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
            elif target.path == "/done":
                landed.update(urllib.parse.parse_qs(target.query))
                arrived.set()
                body = b"<html><body>done</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
            else:
                body = b""
                self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()

    # boto3 writes SigV2 forms for a custom endpoint unless told s3v4.
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
    )
    done = origin + "/done"
    post = client.generate_presigned_post(
        Bucket=bucket,
        Key=key,
        Fields={"success_action_redirect": done, "Content-Type": "text/plain"},
        Conditions=[
            {"success_action_redirect": done},
            {"Content-Type": "text/plain"},
            ["content-length-range", 1, 10 * 1024 * 1024],
        ],
        ExpiresIn=600,
    )
    hidden = "\n".join(
        f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
        for name, value in post["fields"].items()
    )
    page["html"] = f"""<!doctype html>
<html><body>
<form id="upload" action="{html.escape(post['url'])}" method="post" enctype="multipart/form-data">
{hidden}
<input type="file" name="file" id="file">
</form>
<script>
const bytes = Uint8Array.from(atob("{base64.b64encode(data).decode()}"), c => c.charCodeAt(0));
const picked = new DataTransfer();
picked.items.add(new File([bytes], "{html.escape(os.path.basename(path))}", {{type: "text/plain"}}));
document.getElementById("file").files = picked.files;
document.getElementById("upload").submit();
</script>
</body></html>"""

    with tempfile.TemporaryDirectory() as profile:
        browser = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                f"--user-data-dir={profile}",
                origin + "/form.html",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            ok = arrived.wait(60)
        finally:
            browser.terminate()
            try:
                _, err = browser.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                browser.kill()
                _, err = browser.communicate()
    server.shutdown()
    if not ok:
        print("the browser never reached the redirect target", file=sys.stderr)
        print(err.decode(errors="replace")[-4000:], file=sys.stderr)
        return 1
    print(json.dumps({name: values[0] for name, values in landed.items()}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as err:  # report any client error as a plain failure
        print(f"{type(err).__name__}: {err}", file=sys.stderr)
        sys.exit(1)
