"""JSON-RPC 2.0 for the daemon's control socket: one sans-I/O ``Connection`` and thin I/O loops.

- ``node.rpc.connection``: codes, errors, encoding, strict decoding, events and the
  ``Connection`` state machine (bytes in, events out; calls in, bytes out) shared by the control
  server and every client;
- ``node.rpc.sync_client``: ``ControlClient``, the blocking socket client of the CLI;
- ``node.rpc.trio_client``: ``AsyncControlClient``, on trio (imported lazily);
- the TUI's asyncio client drives the same ``Connection`` (``tui/client.py``).

Importing this package stays cheap (stdlib only): the CLI imports it on every invocation.
"""

from node.rpc.connection import (
    CALL_FAILED,
    CLIENT_MAX_LINE,
    DAEMON_MAX_LINE,
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    JSONRPC_VERSION,
    METHOD_NOT_FOUND,
    NOT_FOUND,
    PARSE_ERROR,
    REQUEST_TOO_LARGE,
    UNAVAILABLE,
    Connection,
    ConnectionClosed,
    DaemonNotRunning,
    ErrorResponse,
    Event,
    JsonId,
    LineTooLong,
    Notification,
    Params,
    ProtocolViolation,
    Request,
    RequestError,
    Response,
    Role,
    RpcError,
    decode_line,
    encode_error,
    encode_message,
    encode_notification,
    encode_request,
    encode_result,
    event_params,
    parse_request,
    request_from_json,
)
from node.rpc.sync_client import CallTimeout, ControlClient, warn_ignored
from node.rpc.trio_client import AsyncControlClient

__all__ = [
    "CALL_FAILED",
    "CLIENT_MAX_LINE",
    "DAEMON_MAX_LINE",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "JSONRPC_VERSION",
    "METHOD_NOT_FOUND",
    "NOT_FOUND",
    "PARSE_ERROR",
    "REQUEST_TOO_LARGE",
    "UNAVAILABLE",
    "AsyncControlClient",
    "CallTimeout",
    "Connection",
    "ConnectionClosed",
    "ControlClient",
    "DaemonNotRunning",
    "ErrorResponse",
    "Event",
    "JsonId",
    "LineTooLong",
    "Notification",
    "Params",
    "ProtocolViolation",
    "Request",
    "RequestError",
    "Response",
    "Role",
    "RpcError",
    "decode_line",
    "encode_error",
    "encode_message",
    "encode_notification",
    "encode_request",
    "encode_result",
    "event_params",
    "parse_request",
    "request_from_json",
    "warn_ignored",
]
