"""Log formatting for the daemon: a human line format for terminals, JSON lines for machines.

Human::

    2026-11-26T11:22:33.123Z INFO sovereign.network: dialed peer peer=12D3KooW... ms=250

JSON (one object per line; ``extra=`` fields become keys, exceptions go under ``exc``)::

    {"ts": "2026-11-26T11:22:33.123Z", "level": "info", "logger": "sovereign.network",
     "msg": "dialed peer", "peer": "12D3KooW...", "ms": 250}

Timestamps are UTC with milliseconds so lines from several daemons (siblings, hosts) sort together.

py-libp2p's ``import libp2p`` clears the handlers of its ``libp2p`` logger and sets
``propagate = False``, so a handler attached before that import (the normal order: logging is set
up first, the network later) would silently vanish. Instead the ``libp2p`` logger is made to
always propagate to the root logger, where our handler is, whichever order things happen in. Its
level stays libp2p's own (WARNING unless ``LIBP2P_DEBUG`` says otherwise) and caps every libp2p
module, even those that set a lower level of their own: libp2p's info and debug output is far too
chatty to follow our ``--log-level``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, Final, TextIO

from node.config import LOG_FORMATS, LOG_LEVELS

__all__ = ["setup_logging"]

_NUMERIC_LEVELS: Final = {name: logging.getLevelName(name.upper()) for name in LOG_LEVELS}

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__
) | {"message", "asctime", "taskName"}
_JSON_CORE: Final = ("ts", "level", "logger", "msg")


def _timestamp(record: logging.LogRecord) -> str:
    seconds = int(record.created)
    millis = int((record.created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


def _logfmt_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    # Quote only when needed, so the common case stays readable and the line stays splittable.
    if text and not any(c.isspace() or c in '="\\' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


class _HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={_logfmt_value(v)}" for k, v in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            # An extra named like a core field must not overwrite it; keep it, renamed.
            entry["extra_" + key if key in _JSON_CORE else key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra that JSON cannot encode (a Path, a peer id object) still logs.
        return json.dumps(entry, ensure_ascii=False, default=str)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler as ours so a second setup_logging() replaces it instead of doubling."""


def _libp2p_cap(record: logging.LogRecord) -> bool:
    # Some libp2p modules set their own logger to INFO (auto_connector announces every dial
    # round); the level of the "libp2p" logger is the one knob for all of libp2p's verbosity.
    if record.name.startswith("libp2p."):
        return record.levelno >= logging.getLogger("libp2p").getEffectiveLevel()
    return True


class _PropagatingLogger(logging.Logger):
    """A logger whose ``propagate`` cannot be switched off (see the module docstring)."""

    @property  # type: ignore[override]
    def propagate(self) -> bool:
        return True

    @propagate.setter
    def propagate(self, value: bool) -> None:
        pass


def _route_libp2p(handler: logging.Handler) -> None:
    logger = logging.getLogger("libp2p")
    if logger.level == logging.NOTSET:
        # What libp2p's import will set anyway; set now so modules it imports before that
        # (QUIC shims log at debug) do not leak their chatter through our root level.
        logger.setLevel(logging.WARNING)
    if type(logger) is logging.Logger:
        # Swapping the class works whether or not libp2p is already imported, and survives the
        # propagate=False its import (or a later re-setup) applies.
        logger.__class__ = _PropagatingLogger
    elif not isinstance(logger, _PropagatingLogger):
        # Someone installed a custom logger class; fall back to attaching our handler directly.
        logger.addHandler(handler)


def setup_logging(format: str, level: str, stream: TextIO | None = None) -> None:
    """Send all logging (ours and libp2p's) to ``stream`` (default: stderr at call time).

    Calling it again replaces the previous setup rather than adding a second handler.
    """
    if format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {format!r}")
    if not isinstance(level, str) or level.lower() not in LOG_LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    numeric = _NUMERIC_LEVELS[level.lower()]

    handler = _Handler(sys.stderr if stream is None else stream)
    handler.setFormatter(_JsonFormatter() if format == "json" else _HumanFormatter())
    # On the handler too: records propagated from libp2p skip the root logger's own level check.
    handler.setLevel(numeric)
    handler.addFilter(_libp2p_cap)

    root = logging.getLogger()
    for logger in (root, logging.getLogger("libp2p")):
        for old in [h for h in logger.handlers if isinstance(h, _Handler)]:
            logger.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    _route_libp2p(handler)
