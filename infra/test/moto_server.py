"""moto_server, plus three things the module needs that moto 5.2 lacks.

1. Lambda's LoggingConfig. moto ignores it: CreateFunction and
   UpdateFunctionConfiguration drop it and GetFunction never returns it, so
   every plan after apply would want to add the module's logging_config
   again. This wrapper stores the setting and returns it the way Lambda does
   (JSON format defaults both log levels to INFO; omitted, the format is
   Text). Where moto itself returns LoggingConfig, moto wins.

2. CloudWatch's Smithy RPC v2 CBOR protocol. The AWS provider's CloudWatch
   client (aws-sdk-go-v2 service/cloudwatch >= 1.43) speaks only CBOR: POST
   /service/GraniteServiceVersion20100801/operation/<Op> with a CBOR body.
   moto routes CloudWatch by "/" and understands the query and JSON 1.0
   protocols only, so PutDashboard and PutMetricAlarm would 404. The
   wrapper turns such a request into the equivalent JSON 1.0 request
   (X-Amz-Target: GraniteServiceVersion20100801.<Op>), lets moto answer it,
   and encodes the answer back into CBOR, typing timestamps, blobs and
   numbers from botocore's model of the operation's output, as the Go
   decoder insists on CBOR tag 1 for timestamps and integers for integers.

3. Lambda's concurrency quota in Service Quotas. moto 5.2.1 models only VPC
   quotas and has no GetAWSDefaultServiceQuota, which the provider's
   aws_servicequotas_service_quota data source calls first (then
   GetServiceQuota for the applied value, tolerating NoSuchResource). The
   wrapper answers both for lambda/L-B99A9384, "Concurrent executions", with
   AWS's default of 1,000 per region (Lambda developer guide, "Lambda
   quotas"), and the applied value PULLTHROUGH_MOTO_LAMBDA_CONCURRENCY when
   set (new accounts get less: 10 or 50, as reported in
   aws-samples/one-observability-demo#278).

Usage: python3 infra/test/moto_server.py -H 127.0.0.1 -p PORT
"""

import base64
import io
import json
import re
import struct
import sys
from datetime import datetime

import os

import botocore.session
from moto import server
from moto.awslambda import models
from moto.servicequotas import exceptions as quota_exceptions
from moto.servicequotas import models as quota_models
from moto.servicequotas import responses as quota_responses


def _logging_config(function_name, requested, current=None):
    config = dict(current or {"LogFormat": "Text", "LogGroup": f"/aws/lambda/{function_name}"})
    config.update(requested or {})
    if config.get("LogFormat") == "JSON":
        config.setdefault("ApplicationLogLevel", "INFO")
        config.setdefault("SystemLogLevel", "INFO")
    else:
        # Lambda rejects levels with Text format; drop them as it would never store them.
        config.pop("ApplicationLogLevel", None)
        config.pop("SystemLogLevel", None)
    return config


def _patch(cls):
    original_init = cls.__init__
    original_get = cls.get_configuration
    original_update = cls.update_configuration

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        spec = kwargs["spec"] if "spec" in kwargs else args[1]
        self._pullthrough_logging = _logging_config(self.function_name, spec.get("LoggingConfig"))

    def get_configuration(self, *args, **kwargs):
        config = original_get(self, *args, **kwargs)
        logging = getattr(self, "_pullthrough_logging", None)
        if logging is not None:
            config.setdefault("LoggingConfig", logging)
        return config

    def update_configuration(self, config_updates):
        if "LoggingConfig" in config_updates:
            self._pullthrough_logging = _logging_config(
                self.function_name,
                config_updates["LoggingConfig"],
                getattr(self, "_pullthrough_logging", None),
            )
        return original_update(self, config_updates)

    cls.__init__ = __init__
    cls.get_configuration = get_configuration
    cls.update_configuration = update_configuration


_patch(models.LambdaFunction)


# ---------------------------------------------------------------------------
# CBOR (RFC 8949), only as much as Smithy RPC v2 uses.


class Tag:
    def __init__(self, number, value):
        self.number, self.value = number, value


def cbor_decode(data):
    value, end = _decode(data, 0)
    if end != len(data):
        raise ValueError(f"{len(data) - end} trailing bytes after CBOR value")
    return value


def _argument(data, pos, info):
    if info < 24:
        return info, pos
    if info == 31:
        return None, pos  # indefinite length
    size = {24: 1, 25: 2, 26: 4, 27: 8}[info]
    return int.from_bytes(data[pos : pos + size], "big"), pos + size


def _decode(data, pos):
    major, info = data[pos] >> 5, data[pos] & 0x1F
    pos += 1
    if major == 7:
        if info in (20, 21):
            return info == 21, pos
        if info in (22, 23):
            return None, pos
        fmt, size = {25: (">e", 2), 26: (">f", 4), 27: (">d", 8)}[info]
        return struct.unpack(fmt, data[pos : pos + size])[0], pos + size
    n, pos = _argument(data, pos, info)
    if major == 0:
        return n, pos
    if major == 1:
        return -1 - n, pos
    if major in (2, 3):
        if n is None:
            chunks = []
            while data[pos] != 0xFF:
                chunk, pos = _decode(data, pos)
                chunks.append(chunk)
            value = ("" if major == 3 else b"").join(chunks)
            return value, pos + 1
        raw = bytes(data[pos : pos + n])
        return (raw.decode() if major == 3 else raw), pos + n
    if major in (4, 5):
        items = []
        count = n if major == 4 else (None if n is None else 2 * n)
        while (count is None and data[pos] != 0xFF) or (count is not None and len(items) < count):
            item, pos = _decode(data, pos)
            items.append(item)
        if count is None:
            pos += 1
        if major == 4:
            return items, pos
        return dict(zip(items[::2], items[1::2])), pos
    if major == 6:
        value, pos = _decode(data, pos)
        return Tag(n, value), pos
    raise ValueError(f"CBOR major type {major}")


def cbor_encode(value):
    out = bytearray()
    _encode(value, out)
    return bytes(out)


def _head(major, n, out):
    if n < 24:
        out.append(major << 5 | n)
    else:
        for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
            if n < 1 << (8 * size):
                out.append(major << 5 | info)
                out += n.to_bytes(size, "big")
                return
        raise ValueError(f"{n} does not fit in CBOR")


def _encode(value, out):
    if value is None:
        out.append(0xF6)
    elif isinstance(value, bool):
        out.append(0xF5 if value else 0xF4)
    elif isinstance(value, int):
        _head(0, value, out) if value >= 0 else _head(1, -1 - value, out)
    elif isinstance(value, float):
        out.append(0xFB)
        out += struct.pack(">d", value)
    elif isinstance(value, str):
        raw = value.encode()
        _head(3, len(raw), out)
        out += raw
    elif isinstance(value, (bytes, bytearray)):
        _head(2, len(value), out)
        out += value
    elif isinstance(value, (list, tuple)):
        _head(4, len(value), out)
        for item in value:
            _encode(item, out)
    elif isinstance(value, dict):
        _head(5, len(value), out)
        for k, v in value.items():
            _encode(k, out)
            _encode(v, out)
    elif isinstance(value, Tag):
        _head(6, value.number, out)
        _encode(value.value, out)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as CBOR")


# ---------------------------------------------------------------------------
# RPC v2 CBOR <-> JSON 1.0 for the services moto knows only as JSON.

_OPERATION_PATH = re.compile(r"^/service/([A-Za-z0-9_]+)/operation/([A-Za-z0-9_]+)$")
_SERVICES = {"GraniteServiceVersion20100801": "cloudwatch"}
_models = {}


def _model(target_prefix):
    if target_prefix not in _models:
        _models[target_prefix] = botocore.session.get_session().get_service_model(_SERVICES[target_prefix])
    return _models[target_prefix]


def _to_json(value):
    """A decoded CBOR request as the JSON 1.0 protocol writes it."""
    if isinstance(value, Tag):
        return _to_json(value.value) if value.number == 1 else value.value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return value


def _from_json(value, shape):
    """A JSON 1.0 answer typed the way RPC v2 CBOR encodes the shape."""
    if value is None or shape is None:
        return value
    kind = shape.type_name
    if kind == "structure":
        return {k: _from_json(v, shape.members.get(k)) for k, v in value.items()}
    if kind == "list":
        return [_from_json(v, shape.member) for v in value]
    if kind == "map":
        return {k: _from_json(v, shape.value) for k, v in value.items()}
    if kind == "timestamp":
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        return Tag(1, float(value))
    if kind == "blob":
        return base64.b64decode(value)
    if kind in ("integer", "long", "short", "byte"):
        return int(value)
    if kind in ("double", "float"):
        return float(value)
    return value


class _CBORDispatcher(server.DomainDispatcherApplication):
    def __call__(self, environ, start_response):
        match = _OPERATION_PATH.match(environ.get("PATH_INFO", ""))
        if not match or match.group(1) not in _SERVICES or environ.get("HTTP_SMITHY_PROTOCOL") != "rpc-v2-cbor":
            return super().__call__(environ, start_response)
        prefix, operation = match.groups()
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length else b""
        body = json.dumps(_to_json(cbor_decode(raw)) if raw else {}).encode()

        inner = dict(environ)
        inner.update(
            {
                "PATH_INFO": "/",
                "RAW_URI": "/",
                "REQUEST_URI": "/",
                "CONTENT_TYPE": "application/x-amz-json-1.0",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_X_AMZ_TARGET": f"{prefix}.{operation}",
                "wsgi.input": io.BytesIO(body),
            }
        )
        inner.pop("HTTP_SMITHY_PROTOCOL", None)
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda chunk: None

        answer = b"".join(super().__call__(inner, capture))
        status = captured["status"]
        headers = {k.lower(): v for k, v in captured["headers"]}
        document = json.loads(answer) if answer.strip() else {}
        if status.startswith("2"):
            output = _model(prefix).operation_model(operation).output_shape
            payload = _from_json(document, output)
        else:
            payload = self._error(prefix, operation, document, headers)
        data = cbor_encode(payload)
        out_headers = [
            ("Content-Type", "application/cbor"),
            ("Content-Length", str(len(data))),
            ("smithy-protocol", "rpc-v2-cbor"),
        ]
        for name in ("x-amzn-requestid", "x-amzn-query-error"):
            if name in headers:
                out_headers.append((name, headers[name]))
        start_response(status, out_headers)
        return [data]

    @staticmethod
    def _error(prefix, operation, document, headers):
        """JSON 1.0 errors carry the query error code ("ResourceNotFound");
        CBOR ones name the error shape ("DashboardNotFoundError")."""
        code = str(document.get("__type", "")).split("#")[-1]
        if "x-amzn-query-error" in headers:
            code = headers["x-amzn-query-error"].split(";")[0]
        shape = code
        for error in _model(prefix).operation_model(operation).error_shapes:
            if error.metadata.get("error", {}).get("code") == code or error.name == code:
                shape = error.name
        message = document.get("message", document.get("Message", ""))
        return {"__type": f"com.amazonaws.{_SERVICES[prefix]}#{shape}", "message": message}


server.DomainDispatcherApplication = _CBORDispatcher


def _lambda_concurrency_quota(backend, value):
    return {
        "ServiceCode": "lambda",
        "ServiceName": "AWS Lambda",
        "QuotaArn": f"arn:aws:servicequotas:{backend.region_name}:{backend.account_id}:lambda/L-B99A9384",
        "QuotaCode": "L-B99A9384",
        "QuotaName": "Concurrent executions",
        "Value": value,
        "Unit": "None",
        "Adjustable": True,
        "GlobalQuota": False,
    }


def _patch_service_quotas():
    backend_cls = quota_models.ServiceQuotasBackend
    original_get = backend_cls.get_service_quota

    def get_aws_default_service_quota(self, service_code, quota_code):
        if (service_code, quota_code) == ("lambda", "L-B99A9384"):
            return _lambda_concurrency_quota(self, 1000.0)
        for quota in self.list_aws_default_service_quotas(service_code):
            if quota["QuotaCode"] == quota_code:
                return quota
        raise quota_exceptions.NoSuchResource

    def get_service_quota(self, service_code, quota_code):
        if (service_code, quota_code) == ("lambda", "L-B99A9384"):
            applied = os.environ.get("PULLTHROUGH_MOTO_LAMBDA_CONCURRENCY")
            if not applied:
                raise quota_exceptions.NoSuchResource
            return _lambda_concurrency_quota(self, float(applied))
        return original_get(self, service_code, quota_code)

    def respond_default(self):
        params = json.loads(self.body)
        quota = self.backend.get_aws_default_service_quota(str(params.get("ServiceCode")), str(params.get("QuotaCode")))
        return json.dumps({"Quota": quota})

    backend_cls.get_aws_default_service_quota = get_aws_default_service_quota
    backend_cls.get_service_quota = get_service_quota
    quota_responses.ServiceQuotasResponse.get_aws_default_service_quota = respond_default


_patch_service_quotas()

if __name__ == "__main__":
    server.main(sys.argv[1:])
