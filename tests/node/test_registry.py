"""Loading the protocols a config names (node/runtime/registry.py, service.load_specs): each refusal
names the entry and says why, before anything starts."""

from __future__ import annotations

import pytest

from node.runtime.registry import ProtocolSpec, RegistryError, load_spec
from node.runtime.service import load_specs

NOT_A_SPEC = 42
FEDERATION = ProtocolSpec("federation", lambda ctx: (None, None))  # type: ignore[arg-type,return-value]


def test_a_spec_loads_by_module_or_attribute() -> None:
    assert load_spec("tests.echo_protocol").name == "echo"
    assert load_spec("tests.echo_protocol:PROTOCOL").name == "echo"


@pytest.mark.parametrize(
    ("paths", "message"),
    [
        (["tests.no_such_module"], "cannot import 'tests.no_such_module'"),
        (["tests.node.test_registry:NOT_A_SPEC"], "is not a ProtocolSpec"),
        (["tests.node.test_registry:MISSING"], "is not a ProtocolSpec"),
        (["tests.echo_protocol", "tests.echo_protocol:PROTOCOL"], "'echo' is used twice"),
        (["tests.node.test_registry:FEDERATION"], "'federation' is the daemon's own"),
    ],
)
def test_what_cannot_run_is_refused_by_name(paths: list[str], message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        load_specs(paths)


@pytest.mark.parametrize("name", ["", "Echo", "a b", "x" * 33, "échо"])
def test_a_protocol_name_is_short_lowercase_ascii(name: str) -> None:
    with pytest.raises(ValueError, match="protocol name"):
        ProtocolSpec(name, lambda ctx: (None, None))  # type: ignore[arg-type,return-value]
