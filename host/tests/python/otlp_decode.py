"""Decodes OTLP/HTTP trace exports (protobuf files named on the command
line) with the OpenTelemetry project's generated classes, and prints them
as one JSON list (proto3 JSON mapping: ids in base64, enums by name)."""

import json
import sys

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

exports = []
for path in sys.argv[1:]:
    request = ExportTraceServiceRequest()
    with open(path, "rb") as f:
        # Fails on malformed bytes; a field with an unexpected number or
        # wire type is kept as unknown, which the tests' assertions catch.
        request.ParseFromString(f.read())
    exports.append(MessageToDict(request))
json.dump(exports, sys.stdout)
