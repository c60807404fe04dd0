from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.logs import setup_logging

HUMAN_LINE = re.compile(
    r"(?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<level>[A-Z]+) (?P<logger>[\w.]+): (?P<rest>.*)"
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    # setup_logging changes process-wide state; put it back so other tests see pytest's setup.
    root = logging.getLogger()
    libp2p = logging.getLogger("libp2p")
    saved = (list(root.handlers), root.level, list(libp2p.handlers), libp2p.level, libp2p.__class__)
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        libp2p.handlers[:] = saved[2]
        libp2p.setLevel(saved[3])
        libp2p.__class__ = saved[4]


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_human_format() -> None:
    stream = io.StringIO()
    setup_logging("human", "info", stream)
    logging.getLogger("sovereign.network").info(
        "dialed %s", "peer", extra={"peer": "12D3KooW", "ms": 250, "note": 'a "b"', "ok": True}
    )
    logging.getLogger("sovereign.network").debug("not shown")
    [line] = lines(stream)
    match = HUMAN_LINE.fullmatch(line)
    assert match, line
    assert match["level"] == "INFO" and match["logger"] == "sovereign.network"
    assert match["rest"] == 'dialed peer peer=12D3KooW ms=250 note="a \\"b\\"" ok=true'


def test_json_format_with_extras_and_exception() -> None:
    stream = io.StringIO()
    setup_logging("json", "debug", stream)
    log = logging.getLogger("sovereign.daemon")
    log.debug("started", extra={"peers": 3, "home": Path("/var/lib/sovereign"), "level": "shadowed"})
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        log.exception("crashed", extra={"peer": "Qm"})
    first, second = (json.loads(line) for line in lines(stream))
    assert first["level"] == "debug" and first["logger"] == "sovereign.daemon"
    assert first["msg"] == "started" and first["peers"] == 3
    assert first["home"] == "/var/lib/sovereign"  # not JSON-native: stringified, not dropped
    assert first["extra_level"] == "shadowed"  # an extra cannot overwrite a core field
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert second["level"] == "error" and second["peer"] == "Qm"
    assert "RuntimeError: kaput" in second["exc"] and "Traceback" in second["exc"]


def test_human_exception_text() -> None:
    stream = io.StringIO()
    setup_logging("human", "info", stream)
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("x").exception("failed")
    text = stream.getvalue()
    assert HUMAN_LINE.match(text.splitlines()[0])
    assert "ValueError: bad" in text


def test_timestamp_is_utc_with_millis() -> None:
    stream = io.StringIO()
    setup_logging("json", "info", stream)
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "m", (), None)
    record.created = 1795692153.1239  # 2026-11-26T11:22:33.123Z
    logging.getLogger("t").handle(record)
    assert json.loads(stream.getvalue())["ts"] == "2026-11-26T11:22:33.123Z"


def test_second_setup_replaces_the_first() -> None:
    first, second = io.StringIO(), io.StringIO()
    setup_logging("human", "info", first)
    setup_logging("json", "warning", second)
    logging.getLogger("x").warning("once")
    logging.getLogger("x").info("filtered")
    assert first.getvalue() == ""
    assert [json.loads(line)["msg"] for line in lines(second)] == ["once"]


def test_libp2p_records_survive_its_import_time_setup() -> None:
    # Simulate what `import libp2p` does to its logger after our setup, then log through it.
    stream = io.StringIO()
    setup_logging("json", "info", stream)
    libp2p = logging.getLogger("libp2p")
    libp2p.handlers.clear()
    libp2p.setLevel(logging.WARNING)
    libp2p.propagate = False
    logging.getLogger("libp2p.network.swarm").warning("dial failed", extra={"peer": "Qm"})
    logging.getLogger("libp2p.network.swarm").info("too chatty")
    [entry] = [json.loads(line) for line in lines(stream)]
    assert entry["logger"] == "libp2p.network.swarm" and entry["peer"] == "Qm"


def test_libp2p_module_levels_are_capped_by_the_libp2p_logger() -> None:
    # auto_connector sets its own logger to INFO; its chatter must not reach an info-level log.
    stream = io.StringIO()
    setup_logging("human", "debug", stream)
    chatty = logging.getLogger("libp2p.network.auto_connector")
    saved = chatty.level
    chatty.setLevel(logging.INFO)
    try:
        chatty.info("initiating 150 new dials")
        chatty.warning("dial failed")
    finally:
        chatty.setLevel(saved)
    assert [HUMAN_LINE.fullmatch(line)["rest"] for line in lines(stream)] == ["dial failed"]  # type: ignore[index]


def test_libp2p_warnings_respect_our_level() -> None:
    stream = io.StringIO()
    setup_logging("human", "error", stream)
    logging.getLogger("libp2p.pubsub").warning("hidden at error level")
    logging.getLogger("libp2p.pubsub").error("shown")
    assert [HUMAN_LINE.fullmatch(line)["rest"] for line in lines(stream)] == ["shown"]  # type: ignore[index]


def test_real_libp2p_import_after_setup() -> None:
    # The real thing, in a fresh interpreter: set up logging first, then import libp2p (the
    # daemon's order), and check a libp2p warning comes out in our format.
    script = (
        "import logging\n"
        "from node.logs import setup_logging\n"
        "setup_logging('json', 'debug')\n"
        "import libp2p\n"
        "logging.getLogger('libp2p.network.swarm').warning('dial failed', extra={'peer': 'Qm'})\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBP2P_DEBUG")}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True, env=env
    )
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert entries == [
        {"ts": entries[-1]["ts"], "level": "warning", "logger": "libp2p.network.swarm", "msg": "dial failed", "peer": "Qm"}
    ]


@pytest.mark.parametrize(("fmt", "level"), [("xml", "info"), ("json", "verbose"), ("json", "")])
def test_bad_arguments(fmt: str, level: str) -> None:
    with pytest.raises(ValueError, match="log (format|level)"):
        setup_logging(fmt, level, io.StringIO())
