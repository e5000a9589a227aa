"""A lean protobuf schema for reading ``ExportTraceServiceRequest`` bodies fast.

It declares only the fields the receiver reads, with the same field numbers as
``opentelemetry/proto/trace/v1/trace.proto``, so it parses the same wire bytes; what it
leaves out is skipped as unknown fields. One trick carries the speed: a ``KeyValue``
(``key = 1``, ``value = 2``) is on the wire exactly a protobuf map entry, so attributes
are declared ``map<string, bytes>``. upb then hands over each attribute as a key and the
raw bytes of its ``AnyValue`` without building two message wrappers per attribute (the
wrappers were most of the decode time), and ``any_value`` reads the common shapes
(one string, int, double or bool) straight from those bytes. Anything else — arrays,
kvlists, bytes, or an encoding it does not expect — goes through the real ``AnyValue``.

A repeated key keeps its last value, as the dict the receiver built before did.
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

__all__ = ["ExportRequest", "any_value", "pb_value"]

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "untrace.otlpwire"
# (message, [(field, number, type, repeated, message type)], has a map of attributes)
_SCHEMA: list[tuple[str, list[tuple[str, int, int, bool, str]], bool]] = [
    (
        "Status",
        [("message", 2, _F.TYPE_STRING, False, ""), ("code", 3, _F.TYPE_INT32, False, "")],
        False,
    ),
    (
        "Event",
        [
            ("time_unix_nano", 1, _F.TYPE_FIXED64, False, ""),
            ("name", 2, _F.TYPE_STRING, False, ""),
            ("attributes", 3, _F.TYPE_MESSAGE, True, "Event.AttributesEntry"),
        ],
        True,
    ),
    (
        "Span",
        [
            ("trace_id", 1, _F.TYPE_BYTES, False, ""),
            ("span_id", 2, _F.TYPE_BYTES, False, ""),
            ("parent_span_id", 4, _F.TYPE_BYTES, False, ""),
            ("name", 5, _F.TYPE_STRING, False, ""),
            ("start_time_unix_nano", 7, _F.TYPE_FIXED64, False, ""),
            ("end_time_unix_nano", 8, _F.TYPE_FIXED64, False, ""),
            ("attributes", 9, _F.TYPE_MESSAGE, True, "Span.AttributesEntry"),
            ("events", 11, _F.TYPE_MESSAGE, True, "Event"),
            ("status", 15, _F.TYPE_MESSAGE, False, "Status"),
        ],
        True,
    ),
    ("Scope", [("name", 1, _F.TYPE_STRING, False, "")], False),
    (
        "ScopeSpans",
        [
            ("scope", 1, _F.TYPE_MESSAGE, False, "Scope"),
            ("spans", 2, _F.TYPE_MESSAGE, True, "Span"),
        ],
        False,
    ),
    ("Resource", [("attributes", 1, _F.TYPE_MESSAGE, True, "Resource.AttributesEntry")], True),
    (
        "ResourceSpans",
        [
            ("resource", 1, _F.TYPE_MESSAGE, False, "Resource"),
            ("scope_spans", 2, _F.TYPE_MESSAGE, True, "ScopeSpans"),
        ],
        False,
    ),
    ("Request", [("resource_spans", 1, _F.TYPE_MESSAGE, True, "ResourceSpans")], False),
]


def _build() -> Any:
    file = descriptor_pb2.FileDescriptorProto(
        name="untrace_otlp_wire.proto", package=_PACKAGE, syntax="proto3"
    )
    for name, fields, has_attributes in _SCHEMA:
        message = file.message_type.add(name=name)
        if has_attributes:
            entry = message.nested_type.add(name="AttributesEntry")
            entry.options.map_entry = True
            entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=_F.LABEL_OPTIONAL)
            entry.field.add(name="value", number=2, type=_F.TYPE_BYTES, label=_F.LABEL_OPTIONAL)
        for field, number, kind, repeated, type_name in fields:
            label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
            added = message.field.add(name=field, number=number, type=kind, label=label)
            if type_name:
                added.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.Request"))


ExportRequest = _build()
_DOUBLE = struct.Struct("<d")


def pb_value(v: Any) -> Any:
    """An ``AnyValue`` message as a Python value."""
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "array_value":
        return [pb_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: pb_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return None


def any_value(raw: bytes) -> Any:
    """The encoded ``AnyValue`` ``raw`` as a Python value (raises ``UnicodeDecodeError``
    or ``DecodeError`` when it is not valid)."""
    size = len(raw)
    if not size:
        return None
    tag = raw[0]
    if tag == 0x0A and size > 1:  # string_value (field 1, length-delimited)
        if raw[1] < 0x80 and size == 2 + raw[1]:
            return raw[2:].decode()
        if size > 2 and raw[2] < 0x80 and size == 3 + ((raw[1] & 0x7F) | (raw[2] << 7)):
            return raw[3:].decode()
    elif tag == 0x18:  # int_value (field 3, varint; negative numbers take 10 bytes)
        if size == 2 and raw[1] < 0x80:
            return raw[1]
        if size == 3 and raw[2] < 0x80:
            return (raw[1] & 0x7F) | (raw[2] << 7)
        result = shift = 0
        for i in range(1, min(size, 11)):
            byte = raw[i]
            result |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                if i + 1 == size:
                    result &= (1 << 64) - 1
                    return result - (1 << 64) if result >= 1 << 63 else result
                break
    elif tag == 0x21 and size == 9:  # double_value (field 4, fixed64)
        return _DOUBLE.unpack_from(raw, 1)[0]
    elif tag == 0x10 and size == 2 and raw[1] < 0x80:  # bool_value (field 2, varint)
        return raw[1] != 0
    return pb_value(AnyValue.FromString(raw))
