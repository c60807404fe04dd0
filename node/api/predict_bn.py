"""predict.bn.*: Bayesian networks stored in the node's home, and exact queries on them.

Networks live in `bn/<name>.bif`, in the format bnlearn and pgmpy use, stored as given (at most
`MAX_BIF` characters, written atomically off the event loop) rather than expanded: a `default`
row can stand for millions of entries. What a network and a query may cost is bounded by
node.predict.bayesnet.LIMITS (variables, states, parents, CPT entries, the factors of a query's
elimination plan), on load and again when a query re-reads the stored file.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from node.api.context import Method
from node.api.predict_bounds import MAX_BIF, MAX_CACHED_NETWORKS, MAX_STORED_BIF, invalid
from node.rpc import CALL_FAILED, RpcError

if TYPE_CHECKING:
    from node.predict.bayesnet import BayesianNetwork

NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
T = TypeVar("T")


@dataclass(frozen=True)
class BnLoadParams:
    name: str
    bif: str


@dataclass(frozen=True)
class BnQueryParams:
    name: str
    variable: str
    evidence: dict[str, str] | None = None


class NetworkStore:
    """The networks of one home: its files, a cache of parsed ones, and the one thread that may
    touch either at a time (a network's plan cache is not thread-safe)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.limiter = trio.CapacityLimiter(1)
        # name -> (file mtime, size, network), least recently used first
        self.cache: OrderedDict[str, tuple[float, int, BayesianNetwork]] = OrderedDict()

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()` in the networks' thread; it raises RpcError for what the caller should hear."""
        return await trio.to_thread.run_sync(fn, limiter=self.limiter)

    def store(self, name: str, text: str) -> None:
        """Write bn/<name>.bif atomically: a crash leaves the old file or the new one, never half."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / f"{name}.bif")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.cache.pop(name, None)

    def read(self, name: str) -> BayesianNetwork:
        """The network stored under `name`, from the cache while the file is unchanged."""
        from node.predict.bayesnet import BayesianNetwork, BayesNetError

        path = self.directory / f"{name}.bif"
        try:
            st = path.stat()
        except FileNotFoundError:
            raise RpcError(CALL_FAILED, f"no network named {name!r}; load it with predict.bn.load", {"name": name}) from None
        cached = self.cache.get(name)
        if cached is not None and cached[:2] == (st.st_mtime, st.st_size):
            self.cache.move_to_end(name)
            return cached[2]
        # The stored file is parsed under the same bounds as a load: it may be older than them,
        # or edited in the home.
        if st.st_size > MAX_STORED_BIF:
            raise RpcError(CALL_FAILED, f"stored network {name!r} is {st.st_size:,} bytes, over {MAX_STORED_BIF:,}; "
                           "load it again", {"name": name})
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(MAX_STORED_BIF + 1)
            net = BayesianNetwork.from_bif(text)
        except (BayesNetError, OSError, UnicodeDecodeError) as exc:
            raise RpcError(CALL_FAILED, f"stored network {name!r} is unreadable: {exc}", {"name": name}) from None
        self.cache[name] = (st.st_mtime, st.st_size, net)
        while len(self.cache) > MAX_CACHED_NETWORKS:
            self.cache.popitem(last=False)
        return net


async def predict_bn_load(bn: NetworkStore, p: BnLoadParams) -> dict[str, Any]:
    """Store a Bayesian network (BIF text, as bnlearn/pgmpy/GeNIe write it) under `name` in
    the node's home, after checking it (a malformed file is refused with its line number, one
    over node.predict.bayesnet.LIMITS with the limit it exceeds)."""
    from node.predict.bayesnet import BayesianNetwork, BayesNetError

    name = _name(p.name)
    if len(p.bif) > MAX_BIF:
        raise invalid(f"a BIF text of at most {MAX_BIF:,} characters, got {len(p.bif):,}", "bif",
                      limit="MAX_BIF", value=MAX_BIF)
    try:
        p.bif.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise invalid(f"bif is not valid Unicode text: {exc.reason} at character {exc.start}", "bif") from None

    def load() -> BayesianNetwork:
        try:
            net = BayesianNetwork.from_bif(p.bif)
        except BayesNetError as exc:
            raise _bn_error(exc, "bif") from None
        try:
            bn.store(name, p.bif)  # as given: its size is bounded, the expanded tables' is not
        except OSError as exc:
            raise RpcError(CALL_FAILED, f"could not store network {name!r}: {exc.strerror or exc}") from None
        return net

    net = await bn.run(load)
    return {"name": name, "variables": {v: list(net.states[v]) for v in net.states}}


async def predict_bn_query(bn: NetworkStore, p: BnQueryParams) -> dict[str, Any]:
    """P(variable | evidence) by exact inference (variable elimination) on a stored network;
    a query whose elimination plan exceeds the factor limits is refused before it runs."""
    from node.predict.bayesnet import BayesNetError

    name = _name(p.name)
    evidence = p.evidence or {}

    def query() -> dict[str, float]:
        net = bn.read(name)
        if p.variable not in net.states:
            raise invalid(f"unknown variable {p.variable[:200]!r} in network {name!r}", "variable")
        try:
            return net.query(p.variable, evidence=evidence)
        except BayesNetError as exc:
            raise _bn_error(exc, "evidence") from None

    dist = await bn.run(query)
    return {"variable": p.variable, "evidence": evidence, "distribution": {k: float(v) for k, v in dist.items()}}


def _name(name: str) -> str:
    if not NAME.fullmatch(name):
        raise invalid("name must be 1..64 letters, digits, '_' or '-'", "name")
    return name


def _bn_error(exc: Exception, field: str) -> RpcError:
    from node.predict.bayesnet import LimitError

    if isinstance(exc, LimitError):
        return invalid(str(exc), field, limit=exc.limit, value=exc.value)
    return invalid(str(exc), field)


METHODS: tuple[Method[NetworkStore], ...] = (
    Method("predict.bn.load", predict_bn_load, BnLoadParams),
    Method("predict.bn.query", predict_bn_query, BnQueryParams),
)
