#!/usr/bin/env python3
"""An independent ECS endpoint for DescribeImagePipelines that checks signatures with the
official SDKs' own code.

It is a test fixture for tests/sdk_interop.rs: our client pages through it, and every request
must carry an RPC signature v1 that Alibaba Cloud's official Python SDKs compute identically:

* the legacy core (aliyunsdkcore): ``rpc_signature_composer``'s string-to-sign composer and
  ``sha_hmac1.get_sign_string``;
* the Tea utility (alibabacloud_openapi_util): ``Client.get_rpcsignature``;
* the Tea OpenAPI runtime (alibabacloud_tea_openapi): ``utils.Utils.get_rpcsignature``.

A request whose signature differs from any of them is refused with 400 SignatureDoesNotMatch.
Nothing here re-implements the signature.

Usage::

    verify_server.py --data items.json --log requests.jsonl --credential AK:SECRET[:STS_TOKEN]...

``items.json`` is a JSON list of pipelines in the API's shape (PascalCase, ``Tags.Tag`` as a
list of ``{TagKey, TagValue}``) with an extra ``RegionId``. The first line on stdout is
``listening on http://127.0.0.1:PORT``. Every request is logged as one JSON line:
``{"method", "content_type", "query", "form", "params" (merged, without Signature),
"status", "code"}``.
"""

import argparse
import base64
import datetime
import hashlib
import json
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from aliyunsdkcore.auth.algorithm import sha_hmac1
from aliyunsdkcore.auth.composer import rpc_signature_composer
from alibabacloud_openapi_util.client import Client as OpenApiUtil
from alibabacloud_tea_openapi.utils import Utils as TeaOpenApiUtils

ACTION = "DescribeImagePipelines"
VERSION = "2014-05-26"
DEFAULT_MAX_RESULTS = 50
MAX_MAX_RESULTS = 500
MAX_IDS = 20
MAX_TAGS = 20
TIMESTAMP_SKEW = datetime.timedelta(minutes=15)

# The module-level helper is "private" (double underscore) but not name-mangled at module
# level; fetch it by name so that no class body mangles it either.
_legacy_compose = getattr(rpc_signature_composer, "__compose_string_to_sign")


def legacy_signature(method, params, secret):
    """aliyunsdkcore: string to sign and HMAC-SHA1, exactly as AcsClient signs."""
    string_to_sign = _legacy_compose(method, dict(params))
    return string_to_sign, sha_hmac1.get_sign_string(string_to_sign, secret + "&")


def openapi_util_signature(method, params, secret):
    """alibabacloud_openapi_util.client.Client.get_rpcsignature."""
    return OpenApiUtil.get_rpcsignature(dict(params), method, secret)


def tea_openapi_signature(method, params, secret):
    """alibabacloud_tea_openapi.utils.Utils.get_rpcsignature (what the Tea V2 client uses)."""
    return TeaOpenApiUtils.get_rpcsignature(dict(params), method, secret)


class ApiError(Exception):
    def __init__(self, status, code, message, detail=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail


def _tags_of(item):
    tags = (item.get("Tags") or {}).get("Tag") or []
    return [(t.get("TagKey"), t.get("TagValue")) for t in tags]


class Endpoint:
    """The data set, the credentials and the request log; shared by the handler threads."""

    def __init__(self, items, credentials, log_path):
        self.items = items
        self.credentials = credentials  # AccessKeyId -> (secret, token or None)
        self.log_path = log_path
        self.lock = threading.Lock()
        self.nonces = set()

    def log(self, record):
        line = json.dumps(record, ensure_ascii=False, sort_keys=True)
        with self.lock:
            with open(self.log_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def check_signature(self, method, params):
        for name in ("AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion",
                     "SignatureNonce", "Timestamp", "Action", "Version"):
            if not params.get(name):
                raise ApiError(400, "MissingParameter",
                               f"The input parameter \"{name}\" that is mandatory for "
                               "processing this request is not supplied.")
        key_id = params["AccessKeyId"]
        if key_id not in self.credentials:
            raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        secret, token = self.credentials[key_id]
        if params["SignatureMethod"] != "HMAC-SHA1":
            raise ApiError(400, "InvalidSignatureMethod.Malformed",
                           f"Specified signature method {params['SignatureMethod']!r} is not valid.")
        if params["SignatureVersion"] != "1.0":
            raise ApiError(400, "UnsupportedSignatureVersion",
                           f"Specified signature version {params['SignatureVersion']!r} is not valid.")
        try:
            ts = datetime.datetime.strptime(params["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise ApiError(400, "InvalidTimeStamp.Format",
                           f"Specified time stamp {params['Timestamp']!r} is not valid.")
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        if abs(now - ts) > TIMESTAMP_SKEW:
            raise ApiError(400, "InvalidTimeStamp.Expired",
                           "Specified time stamp or date header is expired.")

        signed = {k: v for k, v in params.items() if k != "Signature"}
        string_to_sign, legacy = legacy_signature(method, signed, secret)
        util = openapi_util_signature(method, signed, secret)
        tea = tea_openapi_signature(method, signed, secret)
        given = params["Signature"]
        if not (given == legacy == util == tea):
            # The message ends with the string to sign, as the service's does: the legacy SDK
            # compares it with its own to tell a wrong secret from a wrong canonical string.
            raise ApiError(400, "SignatureDoesNotMatch",
                           "Specified signature is not matched with our calculation. "
                           f"server string to sign is:{string_to_sign}",
                           {"aliyunsdkcore": legacy, "openapi-util": util, "tea-openapi": tea,
                            "given": given})

        with self.lock:
            if params["SignatureNonce"] in self.nonces:
                raise ApiError(400, "SignatureNonceUsed",
                               "Specified signature nonce was used already.")
            self.nonces.add(params["SignatureNonce"])

        if token is not None and params.get("SecurityToken") != token:
            raise ApiError(400, "InvalidSecurityToken.Mismatch",
                           "Specified SecurityToken is not valid for this AccessKeyId.")
        if token is None and "SecurityToken" in params:
            raise ApiError(400, "InvalidSecurityToken.Malformed",
                           "A SecurityToken was sent with a permanent AccessKey.")

    def describe(self, params):
        if params.get("Action") != ACTION:
            raise ApiError(400, "InvalidAction.NotFound",
                           f"Specified api {params.get('Action')!r} is not found.")
        if params.get("Version") != VERSION:
            raise ApiError(400, "InvalidVersion", f"Specified version {params.get('Version')!r} is not valid.")
        region = params.get("RegionId")
        if not region:
            raise ApiError(400, "MissingRegionId", "RegionId is mandatory for this action.")

        raw_max = params.get("MaxResults", str(DEFAULT_MAX_RESULTS))
        try:
            max_results = int(raw_max)
        except ValueError:
            raise ApiError(400, "InvalidParameter", f"MaxResults {raw_max!r} is not an integer.")
        if not 1 <= max_results <= MAX_MAX_RESULTS:
            raise ApiError(400, "InvalidParameter", f"MaxResults {max_results} is out of range.")

        ids = set()
        n = 1
        while f"ImagePipelineId.{n}" in params:
            ids.add(params[f"ImagePipelineId.{n}"])
            n += 1
        if n - 1 > MAX_IDS:
            raise ApiError(400, "InvalidImagePipelineIdSize.ExceededMaxNumber",
                           f"The maximum number of ImagePipelineId is {MAX_IDS}.")
        tags = []
        n = 1
        while f"Tag.{n}.Key" in params or f"Tag.{n}.Value" in params:
            tags.append((params.get(f"Tag.{n}.Key"), params.get(f"Tag.{n}.Value")))
            n += 1
        if len(tags) > MAX_TAGS:
            raise ApiError(400, "InvalidTagCount", f"The maximum number of Tag is {MAX_TAGS}.")

        def matches(item):
            if item.get("RegionId") != region:
                return False
            if "ResourceGroupId" in params and item.get("ResourceGroupId") != params["ResourceGroupId"]:
                return False
            if "Name" in params and item.get("Name") != params["Name"]:
                return False
            if ids and item.get("ImagePipelineId") not in ids:
                return False
            have = _tags_of(item)
            for key, value in tags:
                if not any(k == key and (value is None or v == value) for k, v in have):
                    return False
            return True

        matched = [item for item in self.items if matches(item)]
        # The token binds the offset to the filter, so a token from another query is refused.
        fingerprint = hashlib.sha256(json.dumps(
            sorted((k, v) for k, v in params.items() if k not in _COMMON), ensure_ascii=False
        ).encode()).hexdigest()[:16]
        offset = 0
        if params.get("NextToken"):
            try:
                decoded = json.loads(base64.urlsafe_b64decode(params["NextToken"].encode()))
                offset = int(decoded["o"])
                if decoded["f"] != fingerprint or not 0 < offset < len(matched):
                    raise ValueError("stale")
            except (ValueError, KeyError, TypeError):
                raise ApiError(403, "Invalid.NextToken", "The specified NextToken is not valid.")
        page = matched[offset:offset + max_results]
        body = {
            "RequestId": str(uuid.uuid4()).upper(),
            "TotalCount": len(matched),
            "MaxResults": max_results,
            "ImagePipeline": {"ImagePipelineSet": [
                {k: v for k, v in item.items() if k != "RegionId"} for item in page
            ]},
        }
        if offset + max_results < len(matched):
            token = {"o": offset + max_results, "f": fingerprint}
            body["NextToken"] = base64.urlsafe_b64encode(json.dumps(token).encode()).decode()
        return body


# Parameters that change per call and so are not part of a NextToken's filter fingerprint.
_COMMON = {"AccessKeyId", "Signature", "SignatureMethod", "SignatureVersion", "SignatureNonce",
           "SignatureType", "Timestamp", "SecurityToken", "Format", "NextToken", "MaxResults"}


class Handler(BaseHTTPRequestHandler):
    endpoint: Endpoint = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # keep the test output quiet
        pass

    def do_GET(self):
        self.handle_call()

    def do_POST(self):
        self.handle_call()

    def handle_call(self):
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        record = {"method": self.command, "path": split.path, "content_type": content_type}
        try:
            query = parse_qsl(split.query, keep_blank_values=True, strict_parsing=False)
            form = []
            if raw_body and content_type == "application/x-www-form-urlencoded":
                form = parse_qsl(raw_body.decode("utf-8"), keep_blank_values=True)
            elif raw_body:
                raise ApiError(400, "InvalidParameter",
                               f"unexpected body of content type {content_type!r}")
            params = {}
            for key, value in query + form:
                if key in params:
                    raise ApiError(400, "InvalidParameter", f"parameter {key!r} given twice")
                params[key] = value
            record["query"] = sorted(k for k, _ in query)
            record["form"] = sorted(k for k, _ in form)
            record["params"] = {k: v for k, v in params.items() if k != "Signature"}
            if split.path != "/":
                raise ApiError(404, "InvalidPath", f"path {split.path!r} is not served")
            self.endpoint.check_signature(self.command, params)
            body = self.endpoint.describe(params)
            self.reply(200, body, record)
        except ApiError as e:
            record["code"] = e.code
            body = {"RequestId": str(uuid.uuid4()).upper(), "HostId": "verify-server",
                    "Code": e.code, "Message": e.message}
            if e.detail is not None:
                body["SignatureDetail"] = record["signature_detail"] = e.detail
            self.reply(e.status, body, record)
        except Exception as e:  # a bug in the fixture must show, not hang the client
            record["code"] = "InternalError"
            self.reply(500, {"Code": "InternalError", "Message": repr(e)}, record)

    def reply(self, status, body, record):
        record["status"] = status
        self.endpoint.log(record)
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="JSON list of pipelines (API shape + RegionId)")
    ap.add_argument("--log", required=True, help="JSON-lines request log to append to")
    ap.add_argument("--credential", action="append", required=True,
                    help="AK:SECRET or AK:SECRET:STS_TOKEN (repeatable)")
    ap.add_argument("--listen", default="127.0.0.1:0", help="host:port (default 127.0.0.1:0)")
    ap.add_argument("--exit-on-stdin-eof", action="store_true",
                    help="stop when stdin closes (so a dying parent never leaves it behind)")
    args = ap.parse_args()

    with open(args.data, encoding="utf-8") as f:
        items = json.load(f)
    credentials = {}
    for spec in args.credential:
        parts = spec.split(":", 2)
        if len(parts) < 2 or not parts[0] or not parts[1]:
            ap.error(f"--credential {spec!r} is not AK:SECRET[:TOKEN]")
        credentials[parts[0]] = (parts[1], parts[2] if len(parts) == 3 else None)

    Handler.endpoint = Endpoint(items, credentials, args.log)
    host, _, port = args.listen.rpartition(":")
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    print(f"listening on http://{server.server_address[0]}:{server.server_address[1]}", flush=True)
    if args.exit_on_stdin_eof:
        def watch_stdin():
            sys.stdin.buffer.read()
            server.shutdown()
        threading.Thread(target=watch_stdin, daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
