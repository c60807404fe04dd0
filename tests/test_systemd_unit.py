"""The shipped systemd unit: systemd itself accepts it, and it keeps its hardening."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node.config import load_config

SYSTEMD_DIR = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD_DIR / "sovereign.service"
ENV_EXAMPLE = SYSTEMD_DIR / "sovereign.env.example"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value given (systemd allows repeated keys; configparser does not)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"line {number}: keep directives on one line"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"line {number}: directive outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"line {number}: not KEY=VALUE: {raw!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package: systemd)")
    # verify insists that ExecStart's binary exists; point it at this venv's entry point.
    script = Path(sys.executable).parent / "sovereign"
    binary = f"{script} daemon" if script.exists() else "/bin/true"
    text = UNIT.read_text(encoding="utf-8")
    lines = [f"ExecStart={binary}" if line.startswith("ExecStart=") else line for line in text.splitlines()]
    assert sum(line.startswith("ExecStart=") for line in lines) == 1
    copy = tmp_path / "sovereign.service"
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")

    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60
    )
    # verify may complain about other units on this machine; only our file's lines matter.
    ours = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if str(copy) in line or line.startswith("sovereign.service")
    ]
    assert result.returncode == 0, result.stderr
    assert ours == []


def test_service_basics(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "ExecStart": "/usr/local/bin/sovereign daemon",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "RestartSec": "2",
        "StateDirectory": "sovereign",
        "StateDirectoryMode": "0700",
        "RuntimeDirectory": "sovereign",
        "RuntimeDirectoryMode": "0700",
        "KillMode": "control-group",
        "TimeoutStopSec": "10",
        "UMask": "0077",
        "LimitNOFILE": "65536",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], key
    assert "SOVEREIGN_LOG_FORMAT=json" in service["Environment"]
    assert service.get("User") == ["sovereign"] or service.get("DynamicUser") == ["yes"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_hardening(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]
    expected = {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "RestrictRealtime": "yes",
        "SystemCallFilter": "@system-service",
        "SystemCallArchitectures": "native",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], key
    assert service["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    # Not verified safe with cffi/libffi callbacks: must stay off (see the unit's comment).
    assert "MemoryDenyWriteExecute" not in service


def test_env_example_is_valid(tmp_path: Path) -> None:
    # Uncommenting every setting in the example must give a configuration the daemon accepts.
    env: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("#SOVEREIGN_"):
            key, _, value = line[1:].partition("=")
            env[key] = value
    assert {"SOVEREIGN_LISTEN", "SOVEREIGN_BOOTSTRAP", "SOVEREIGN_LOG_LEVEL"} <= set(env)
    env.pop("SOVEREIGN_PASSPHRASE", None)
    config = load_config(home=tmp_path, env=env, overrides={})
    assert len(config.bootstrap) == 1 and len(config.listen) == 2
