#!/usr/bin/env python3
"""Page through DescribeImagePipelines with every style of Alibaba Cloud's official Python SDKs.

A test driver for tests/sdk_interop.rs: it proves that an endpoint (ecs-sim) serves what the
official clients send. Styles:

* ``legacy-post``: aliyunsdkcore ``AcsClient`` + aliyunsdkecs ``DescribeImagePipelinesRequest``
  as generated (POST, every parameter in the query string, signature v1);
* ``legacy-get``: the same request sent with GET;
* ``legacy-post-form``: the same request with the action's filters moved into an
  ``application/x-www-form-urlencoded`` body (``add_body_params``), RegionId left in the query;
* ``tea-v2``: alibabacloud_ecs20140526 ``Client`` with ``signature_algorithm='v2'``
  (HMAC-SHA1 RPC signature, POST, parameters in the query string);
* ``tea-v3``: the same client with its default ``ACS3-HMAC-SHA256`` signature (Authorization
  header, ``x-acs-*`` headers).

Usage::

    page_sim.py --endpoint http://127.0.0.1:PORT --access-key-id AK --access-key-secret SK \\
        [--security-token TOKEN] [--styles legacy-post,tea-v2] < cases.json

``cases.json`` (or ``--cases JSON``) maps a case name to a filter::

    {"by-tag": {"RegionId": "cn-hangzhou", "ResourceGroupId": "rg-..", "Name": "..",
                "ImagePipelineIds": ["ip-.."], "Tags": [{"Key": "k", "Value": "v"}],
                "MaxResults": 7}}

It prints one JSON object: ``{case: {style: {"ids": [...], "pages": N, "error": null | {...}}}}``
where ``ids`` lists every ``ImagePipelineId`` in the order received (duplicates kept) and
``error`` describes the request the endpoint refused (its code, message and what was sent).
"""

import argparse
import json
import sys
from urllib.parse import urlsplit

from aliyunsdkcore.acs_exception.exceptions import ClientException as LegacyClientException
from aliyunsdkcore.acs_exception.exceptions import ServerException as LegacyServerException
from aliyunsdkcore.auth.credentials import AccessKeyCredential, StsTokenCredential
from aliyunsdkcore.client import AcsClient
from aliyunsdkecs.request.v20140526.DescribeImagePipelinesRequest import (
    DescribeImagePipelinesRequest as LegacyRequest,
)

from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as TeaEcsClient
from alibabacloud_tea_openapi import models as open_api_models
from darabonba.core import DaraCore
from darabonba.runtime import RuntimeOptions

STYLES = ("legacy-post", "legacy-get", "legacy-post-form", "tea-v2", "tea-v3")
MAX_PAGES = 500


class Refused(Exception):
    """The endpoint (or the SDK) refused a page; carries what was sent."""

    def __init__(self, page, detail):
        super().__init__(detail.get("message"))
        self.page = page
        self.detail = detail


# ---------------------------------------------------------------------------------------------
# Legacy SDK: aliyunsdkcore + aliyunsdkecs


def legacy_client(creds, region):
    if creds.get("security_token"):
        credential = StsTokenCredential(
            creds["access_key_id"], creds["access_key_secret"], creds["security_token"]
        )
    else:
        credential = AccessKeyCredential(creds["access_key_id"], creds["access_key_secret"])
    return AcsClient(
        region_id=region,
        credential=credential,
        auto_retry=False,
        max_retry_time=0,
        timeout=30,
        connect_timeout=5,
    )


def legacy_page(client, host, filt, token, style):
    req = LegacyRequest()
    req.set_endpoint(host)
    req.set_protocol_type("http")
    req.set_accept_format("JSON")
    if style == "legacy-get":
        req.set_method("GET")
    req.add_query_param("RegionId", filt["RegionId"])
    if "ResourceGroupId" in filt:
        req.set_ResourceGroupId(filt["ResourceGroupId"])
    if "Name" in filt:
        req.set_Name(filt["Name"])
    if filt.get("ImagePipelineIds"):
        req.set_ImagePipelineIds(filt["ImagePipelineIds"])
    if filt.get("Tags"):
        req.set_Tags(filt["Tags"])
    if "MaxResults" in filt:
        req.set_MaxResults(filt["MaxResults"])
    if token:
        req.set_NextToken(token)
    if style == "legacy-post-form":
        # Move the action's own parameters into the form body; keep RegionId in the query
        # (AcsClient adds its region there when the query lacks one).
        query = req.get_query_params()
        for key in [k for k in query if k != "RegionId"]:
            req.add_body_params(key, query.pop(key))
    try:
        raw = client.do_action_with_exception(req)
    except (LegacyServerException, LegacyClientException) as e:
        raise Refused(0, {
            "code": e.get_error_code(),
            "message": e.get_error_msg(),
            "http_status": getattr(e, "get_http_status", lambda: None)(),
            "request_id": getattr(e, "get_request_id", lambda: None)(),
            "method": req.get_method(),
            "query": dict(req.get_query_params()),
            "body": dict(req.get_body_params() or {}),
            "string_to_sign": getattr(req, "string_to_sign", None),
        })
    body = json.loads(raw)
    items = ((body.get("ImagePipeline") or {}).get("ImagePipelineSet")) or []
    return [item.get("ImagePipelineId") for item in items], body.get("NextToken") or None


# ---------------------------------------------------------------------------------------------
# Tea SDK: alibabacloud_ecs20140526


# The Tea client raises the endpoint's error without the request; remember the last request
# sent (only observed, never altered) so that a refusal can be reported with what was sent.
_last_tea_request = {}
_do_action = DaraCore.do_action


def _recording_do_action(request, *args, **kwargs):
    _last_tea_request["request"] = request
    return _do_action(request, *args, **kwargs)


DaraCore.do_action = staticmethod(_recording_do_action)


def tea_client(creds, host, style):
    config = open_api_models.Config(
        access_key_id=creds["access_key_id"],
        access_key_secret=creds["access_key_secret"],
        security_token=creds.get("security_token"),
        endpoint=host,
        protocol="http",
        read_timeout=30000,
        connect_timeout=5000,
    )
    if style == "tea-v2":
        config.signature_algorithm = "v2"
    return TeaEcsClient(config)


def tea_page(client, filt, token):
    req = ecs_models.DescribeImagePipelinesRequest(
        region_id=filt["RegionId"],
        resource_group_id=filt.get("ResourceGroupId"),
        name=filt.get("Name"),
        image_pipeline_id=filt.get("ImagePipelineIds") or None,
        tag=[
            ecs_models.DescribeImagePipelinesRequestTag(key=t.get("Key"), value=t.get("Value"))
            for t in filt.get("Tags") or []
        ] or None,
        max_results=filt.get("MaxResults"),
        next_token=token,
    )
    _last_tea_request.clear()
    try:
        resp = client.describe_image_pipelines_with_options(req, RuntimeOptions())
    except Exception as e:  # the endpoint's error, or UnretryableException(cause)
        cause = getattr(e, "inner_exception", None) or e
        sent = _last_tea_request.get("request")
        raise Refused(0, {
            "code": getattr(cause, "code", type(cause).__name__),
            "message": getattr(cause, "message", None) or str(cause),
            "http_status": getattr(cause, "status_code", None),
            "request_id": getattr(cause, "request_id", None),
            "method": getattr(sent, "method", None),
            "query": dict(getattr(sent, "query", None) or {}),
            "headers": dict(getattr(sent, "headers", None) or {}),
            "body": getattr(sent, "body", None),
        })
    body = resp.body
    items = (body.image_pipeline.image_pipeline_set if body.image_pipeline else None) or []
    return [item.image_pipeline_id for item in items], body.next_token or None


# ---------------------------------------------------------------------------------------------


def page_through(style, endpoint, creds, filt):
    host = urlsplit(endpoint).netloc
    if style.startswith("legacy"):
        client = legacy_client(creds, filt["RegionId"])
        fetch = lambda token: legacy_page(client, host, filt, token, style)  # noqa: E731
    else:
        client = tea_client(creds, host, style)
        fetch = lambda token: tea_page(client, filt, token)  # noqa: E731
    ids, pages, token = [], 0, None
    while True:
        try:
            page_ids, token = fetch(token)
        except Refused as e:
            e.detail["page"] = pages + 1
            return {"ids": ids, "pages": pages, "error": e.detail}
        except Exception as e:  # an SDK failure of any other kind is a result too
            return {"ids": ids, "pages": pages,
                    "error": {"code": type(e).__name__, "message": str(e), "page": pages + 1}}
        pages += 1
        ids.extend(page_ids)
        if not token:
            return {"ids": ids, "pages": pages, "error": None}
        if pages >= MAX_PAGES:
            return {"ids": ids, "pages": pages,
                    "error": {"code": "TooManyPages", "message": f"still a NextToken after {pages} pages",
                              "page": pages}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", required=True, help="http://127.0.0.1:PORT")
    ap.add_argument("--access-key-id", required=True)
    ap.add_argument("--access-key-secret", required=True)
    ap.add_argument("--security-token")
    ap.add_argument("--styles", default=",".join(STYLES), help=f"comma-separated, of {STYLES}")
    ap.add_argument("--cases", help="JSON object of named filters (default: read stdin)")
    args = ap.parse_args()

    styles = [s for s in args.styles.split(",") if s]
    unknown = [s for s in styles if s not in STYLES]
    if unknown:
        ap.error(f"unknown styles {unknown}; known: {STYLES}")
    cases = json.loads(args.cases if args.cases is not None else sys.stdin.read())
    creds = {
        "access_key_id": args.access_key_id,
        "access_key_secret": args.access_key_secret,
        "security_token": args.security_token,
    }
    out = {
        name: {style: page_through(style, args.endpoint, creds, filt) for style in styles}
        for name, filt in cases.items()
    }
    json.dump(out, sys.stdout, ensure_ascii=False, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
