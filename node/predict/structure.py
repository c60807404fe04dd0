"""Score-based structure learning for discrete Bayesian networks.

`hill_climb` runs greedy hill climbing over DAGs, starting from the empty graph, with single-edge
add / remove / reverse moves that keep the graph acyclic and respect `max_parents`. The score is
BIC, computed from counts with numpy; it is decomposable, so each family score
(variable, parent set) is computed once and cached. At every step the move with the largest
score gain is taken (ties broken by the move's sorted position, so runs are deterministic); the
search stops when no move improves the score by more than a small tolerance, or after
`max_iter` moves. The returned network's CPTs are fitted by maximum likelihood
(`node.predict.bayesnet.fit_mle`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from node.predict.bayesnet import BayesianNetwork, BayesNetError, fit_mle

__all__ = ["hill_climb", "bic_family_score"]

_TOLERANCE = 1e-9


def _encode(
    data: Sequence[Mapping[str, str]] | Mapping[str, Sequence[str]],
    states: Mapping[str, Sequence[str]],
) -> tuple[dict[str, np.ndarray], int]:
    """Integer-coded columns (variable -> array of state indices) and the row count."""
    if not states:
        raise BayesNetError("states must name at least one variable")
    index = {v: {s: i for i, s in enumerate(ss)} for v, ss in states.items()}
    for v, ss in states.items():
        if not ss:
            raise BayesNetError(f"variable {v!r} has no states")
        if len(index[v]) != len(tuple(ss)):
            raise BayesNetError(f"variable {v!r} has duplicate states")
    columns: dict[str, np.ndarray] = {}
    if isinstance(data, Mapping):
        lengths = set()
        for v in states:
            if v not in data:
                raise BayesNetError(f"data has no column for variable {v!r}")
            col = list(data[v])
            lengths.add(len(col))
            try:
                columns[v] = np.array([index[v][x] for x in col], dtype=np.intp)
            except (KeyError, TypeError):
                bad = next(x for x in col if not isinstance(x, str) or x not in index[v])
                raise BayesNetError(f"unknown state {bad!r} for variable {v!r}") from None
        if len(lengths) != 1:
            raise BayesNetError(f"data columns have different lengths: {sorted(lengths)}")
        n = lengths.pop()
    else:
        rows = list(data)
        n = len(rows)
        coded = {v: np.empty(n, dtype=np.intp) for v in states}
        for r, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise BayesNetError(f"data row {r} is not a mapping")
            for v in states:
                if v not in row:
                    raise BayesNetError(f"data row {r} has no value for variable {v!r}")
                try:
                    coded[v][r] = index[v][row[v]]
                except (KeyError, TypeError):
                    raise BayesNetError(
                        f"data row {r}: unknown state {row[v]!r} for variable {v!r}"
                    ) from None
        columns = coded
    if n == 0:
        raise BayesNetError("data is empty")
    return columns, n


def bic_family_score(
    child: np.ndarray, parents: Sequence[np.ndarray], child_card: int, parent_cards: Sequence[int]
) -> float:
    """BIC of one family: log-likelihood at the MLE minus (log N / 2) * free parameters."""
    n = child.shape[0]
    q = 1
    config = np.zeros(n, dtype=np.intp)
    for col, card in zip(parents, parent_cards):
        config = config * card + col
        q *= card
    counts = np.bincount(config * child_card + child, minlength=q * child_card).reshape(q, child_card)
    totals = counts.sum(axis=1, keepdims=True)
    nz = counts > 0
    loglik = float(np.sum(counts[nz] * np.log(counts[nz] / np.broadcast_to(totals, counts.shape)[nz])))
    return loglik - 0.5 * math.log(n) * q * (child_card - 1)


def _reaches(parents: Mapping[str, set[str]], start: str, target: str) -> bool:
    """Whether there is a directed path start -> ... -> target."""
    children: dict[str, list[str]] = {v: [] for v in parents}
    for v, ps in parents.items():
        for p in ps:
            children[p].append(v)
    stack, seen = [start], {start}
    while stack:
        u = stack.pop()
        if u == target:
            return True
        for c in children[u]:
            if c not in seen:
                seen.add(c)
                stack.append(c)
    return False


def hill_climb(
    data: Sequence[Mapping[str, str]] | Mapping[str, Sequence[str]],
    states: Mapping[str, Sequence[str]],
    max_parents: int = 3,
    max_iter: int = 1000,
    score: str = "bic",
    name: str = "learned",
) -> BayesianNetwork:
    """Learn a DAG by greedy hill climbing on BIC, then fit its CPTs by MLE.

    `data` is either a sequence of rows (dicts variable -> state) or columns (dict variable ->
    sequence of states). Raises `BayesNetError` (a ValueError) for empty data, unknown states or
    variables, or bad arguments.
    """
    if score != "bic":
        raise BayesNetError(f"unknown score {score!r}; only 'bic' is supported")
    if isinstance(max_parents, bool) or not isinstance(max_parents, int) or max_parents < 0:
        raise BayesNetError(f"max_parents must be a non-negative integer, got {max_parents!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise BayesNetError(f"max_iter must be a non-negative integer, got {max_iter!r}")
    states = {v: tuple(ss) for v, ss in states.items()}
    columns, n = _encode(data, states)
    variables = sorted(states)
    card = {v: len(states[v]) for v in variables}
    cache: dict[tuple[str, frozenset[str]], float] = {}

    def family(v: str, ps: frozenset[str]) -> float:
        key = (v, ps)
        if key not in cache:
            ordered = sorted(ps)
            cache[key] = bic_family_score(
                columns[v], [columns[p] for p in ordered], card[v], [card[p] for p in ordered]
            )
        return cache[key]

    parents: dict[str, set[str]] = {v: set() for v in variables}
    for _ in range(max_iter):
        best_gain = _TOLERANCE
        best_move: tuple[str, str, str] | None = None
        for u in variables:
            for v in variables:
                if u == v:
                    continue
                pv = frozenset(parents[v])
                if u in pv:
                    # remove u -> v
                    gain = family(v, pv - {u}) - family(v, pv)
                    if gain > best_gain:
                        best_gain, best_move = gain, ("remove", u, v)
                    # reverse u -> v into v -> u
                    pu = frozenset(parents[u])
                    if len(pu) < max_parents:
                        parents[v].discard(u)
                        cyclic = _reaches(parents, v, u)
                        parents[v].add(u)
                        if not cyclic:
                            gain = (
                                family(v, pv - {u}) - family(v, pv) + family(u, pu | {v}) - family(u, pu)
                            )
                            if gain > best_gain:
                                best_gain, best_move = gain, ("reverse", u, v)
                elif v not in parents[u] and len(pv) < max_parents:
                    # add u -> v unless v already reaches u
                    if not _reaches(parents, v, u):
                        gain = family(v, pv | {u}) - family(v, pv)
                        if gain > best_gain:
                            best_gain, best_move = gain, ("add", u, v)
        if best_move is None:
            break
        kind, u, v = best_move
        if kind == "add":
            parents[v].add(u)
        elif kind == "remove":
            parents[v].discard(u)
        else:
            parents[v].discard(u)
            parents[u].add(v)

    rows: Sequence[Mapping[str, str]]
    if isinstance(data, Mapping):
        rows = [{v: states[v][columns[v][i]] for v in variables} for i in range(n)]
    else:
        rows = data
    return fit_mle(states, {v: tuple(sorted(parents[v])) for v in states}, rows, name=name)
