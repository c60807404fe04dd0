"""Discrete Bayesian networks: validation, BIF input/output, exact and approximate inference.

A `BayesianNetwork` holds discrete variables with named states, a DAG given as the parents of
each variable, and one conditional probability table (CPT) per variable as a numpy array of
shape ``(card(parent_1), ..., card(parent_k), card(variable))``: the last axis is the
variable's own state, and every row (fixing the parents) sums to one.

Exact inference is variable elimination with a greedy min-fill elimination order (ties broken
by min-weight, then by name) over only the CPTs the answer needs: Shachter's Bayes-ball finds
them and the evidence that matters (barren nodes and evidence d-separated from the query drop
out). Per (query variables, evidence variables) signature a `_Plan` is cached: the pruned
tables, the order, and one `np.einsum` per eliminated variable, so a repeated query only
indexes the CPTs by the evidence values and runs those einsums.
Approximate inference is likelihood weighting from a seeded `numpy.random.Generator`.

The only I/O is `read_bif(path)`; `BayesianNetwork.from_bif(text)` and `to_bif()` handle the
BIF text used by bnlearn and pgmpy.

Limits. A network may come from a remote peer, and a BIF `default` row or a few parents can
stand for tables far larger than the text (21 binary parents: 4 million entries from 2 KB), so
what a network may cost is bounded before anything is expanded; `Limits` holds the bounds and
`LIMITS` the defaults, and going over one raises `LimitError` naming it:

    variables      2,000      per network (bnlearn's munin has 1,041, link 724, pigs 441)
    states           256      per variable (mildew has 100, barley 67, pathfinder 63)
    parents           12      per variable (bnlearn's largest in-degree is 7, in win95pts)
    table_entries 262,144     per CPT, the product of the cardinalities (2 MB of float64)
    total_entries 1,048,576   summed over the network's CPTs (8 MB)
    factor_entries 4,194,304  the largest factor a query's elimination plan forms (its clique)
    query_entries 33,554,432  summed over the factors of one query's plan

The parser checks states, parents and table sizes as it reads each declaration, before any
table is allocated; a query checks its plan (the elimination order's cliques, worked out from
the cardinalities alone) before any einsum runs. The shipped asia, cancer, child and alarm need
at most 108 entries a table and 752 in all, and their queries a few hundred entries a factor.
Networks whose treewidth puts exact inference out of reach (munin, barley, link) load but
refuse the queries whose plans exceed the factor bounds.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import numpy as np

__all__ = [
    "BayesNetError",
    "BifError",
    "BayesianNetwork",
    "LIMITS",
    "LimitError",
    "Limits",
    "read_bif",
    "fit_mle",
]

ROW_SUM_TOLERANCE = 1e-6
PLAN_CACHE_SIZE = 4096  # compiled query plans kept per network (oldest signature dropped first)
PLAN_CACHE_BYTES = 64 * 2**20  # and the arrays they precompute, per network


@dataclass(frozen=True)
class Limits:
    """What one network and one query may cost (see the module docstring)."""

    variables: int = 2_000
    states: int = 256
    parents: int = 12
    table_entries: int = 1 << 18
    total_entries: int = 1 << 20
    factor_entries: int = 1 << 22
    query_entries: int = 1 << 25


LIMITS = Limits()


class BayesNetError(ValueError):
    """An invalid network, an unknown variable or state, or impossible evidence."""


class BifError(BayesNetError):
    """Malformed BIF text; `line` is the 1-based line where the problem was found."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(f"BIF line {line}: {message}")
        self.line = line


class LimitError(BayesNetError):
    """A network or a query over one of the `Limits`: `limit` names the bound, `value` its value.

    `line` is the BIF line for a limit met while parsing, else None."""

    def __init__(self, what: str, limit: str, value: int, line: int | None = None) -> None:
        message = f"{what}: over the limit {limit}={value:,}"
        super().__init__(message if line is None else f"BIF line {line}: {message}")
        self.limit = limit
        self.value = value
        self.line = line


def _capped_product(values: Iterable[int], cap: int) -> int:
    """The product of `values`, or cap + 1 as soon as it exceeds `cap` (no huge integers)."""
    out = 1
    for v in values:
        out *= v
        if out > cap:
            return cap + 1
    return out


# ----------------------------------------------------------------------------------------------
# Factors
# ----------------------------------------------------------------------------------------------


_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class _Factor:
    variables: tuple[str, ...]
    values: np.ndarray  # one axis per variable, in order


def _product(a: _Factor, b: _Factor) -> _Factor:
    variables = a.variables + tuple(v for v in b.variables if v not in a.variables)
    if len(variables) > 52:
        raise BayesNetError(f"factor over {len(variables)} variables is too large to form")
    letters = {v: _LETTERS[i] for i, v in enumerate(variables)}
    spec = (
        "".join(letters[v] for v in a.variables)
        + ","
        + "".join(letters[v] for v in b.variables)
        + "->"
        + "".join(letters[v] for v in variables)
    )
    return _Factor(variables, np.einsum(spec, a.values, b.values))


def _multiply_all(factors: Sequence[_Factor]) -> _Factor:
    result = _Factor((), np.array(1.0))
    for f in factors:
        result = _product(result, f)
    return result


def _marginalise(f: _Factor, variable: str, how: Literal["sum", "max"]) -> _Factor:
    axis = f.variables.index(variable)
    values = f.values.sum(axis=axis) if how == "sum" else f.values.max(axis=axis)
    return _Factor(f.variables[:axis] + f.variables[axis + 1 :], values)


def _reduce(f: _Factor, evidence: Mapping[str, int]) -> _Factor:
    index: list[int | slice] = []
    kept: list[str] = []
    for v in f.variables:
        if v in evidence:
            index.append(evidence[v])
        else:
            index.append(slice(None))
            kept.append(v)
    return _Factor(tuple(kept), f.values[tuple(index)])


def _subscripts(inputs: Sequence[Sequence[str]], output: Sequence[str]) -> str:
    """An einsum spec over per-call letters (only 52 exist, so they are not global names)."""
    letters: dict[str, str] = {}
    for v in itertools.chain(*inputs, output):
        if v not in letters:
            if len(letters) == len(_LETTERS):
                raise BayesNetError(f"a factor over more than {len(_LETTERS)} variables is too large to form")
            letters[v] = _LETTERS[len(letters)]
    return ",".join("".join(letters[v] for v in scope) for scope in inputs) + "->" + "".join(
        letters[v] for v in output
    )


@dataclass(frozen=True)
class _Plan:
    """Variable elimination compiled for one (query variables, evidence variables) signature.

    Between queries of one signature only the evidence values change, so everything else is
    worked out once. The arrays live in numbered slots: first the CPTs (reduced by the
    evidence), then one slot per eliminated variable, holding the einsum of the factors that
    mention it with it summed out (one C call rather than a chain of pairwise products), then
    the final product over `outputs`. A slot that no evidence reaches is the same for every
    query of the signature, so it is computed once here and kept in `constants`; a query only
    indexes the CPTs in `reductions` and runs the einsums in `steps`.
    """

    order: tuple[str, ...]  # the variables summed out, in this order
    outputs: tuple[str, ...]  # the axes of the final slot
    constants: tuple[np.ndarray | None, ...]  # per slot: its array, or None if evidence reaches it
    reductions: tuple[tuple[int, str, tuple[tuple[int, str], ...]], ...]  # (slot, CPT owner, (axis, observed var))
    steps: tuple[tuple[int, str, tuple[int, ...]], ...]  # (slot, einsum spec, operand slots)
    nbytes: int = 0  # of the constants the plan computed (the CPTs it shares are not counted)


def _compile(
    cpts: Mapping[str, np.ndarray],
    scopes: Mapping[str, tuple[str, ...]],
    evidence: frozenset[str],
    order: Sequence[str],
    outputs: tuple[str, ...],
) -> _Plan:
    """The `_Plan` summing `order` out of the CPTs of `scopes` (owner -> full scope)."""
    constants: list[np.ndarray | None] = []
    reductions: list[tuple[int, str, tuple[tuple[int, str], ...]]] = []
    steps: list[tuple[int, str, tuple[int, ...]]] = []
    slots: list[tuple[str, ...]] = []  # the variables of each slot's array, axis by axis

    def add(scope: tuple[str, ...], spec: str, operands: Sequence[int]) -> None:
        slot = len(slots)
        slots.append(scope)
        known = [c for i in operands if (c := constants[i]) is not None]
        if len(known) == len(operands):
            value = np.einsum(spec, *known)
            value.setflags(write=False)  # shared by every query of the signature
            constants.append(value)
        else:
            constants.append(None)
            steps.append((slot, spec, tuple(operands)))

    tables = len(scopes)
    for owner, scope in scopes.items():
        observed = tuple((axis, v) for axis, v in enumerate(scope) if v in evidence)
        if observed:
            reductions.append((len(slots), owner, observed))
        constants.append(None if observed else cpts[owner])
        slots.append(tuple(v for v in scope if v not in evidence))
    live = list(range(len(slots)))
    for var in order:
        touching = [i for i in live if var in slots[i]]
        if touching:
            kept = tuple(dict.fromkeys(v for i in touching for v in slots[i] if v != var))
            add(kept, _subscripts([slots[i] for i in touching], kept), touching)
            live = [i for i in live if i not in touching] + [len(slots) - 1]
    add(outputs, _subscripts([slots[i] for i in live], outputs), live)
    nbytes = sum(c.nbytes for c in constants[tables:] if c is not None)
    return _Plan(tuple(order), outputs, tuple(constants), tuple(reductions), tuple(steps), nbytes)


_OVER = 1 << 62  # the fill of a variable whose clique is over the limit: eliminated last


def _min_fill_order(
    scopes: Iterable[Iterable[str]],
    eliminate: Iterable[str],
    cards: Mapping[str, int],
    limits: Limits = LIMITS,
) -> tuple[str, ...]:
    """Greedy min-fill order over the interaction graph; ties by min-weight, then by name.

    The weight of a variable is the size of the factor its elimination forms (its clique: it and
    its neighbours). A variable whose clique is over `limits.factor_entries` ranks after every
    other (its fill is not even counted: a hub with thousands of neighbours would cost their
    square on every update); if only such variables remain, every order from here on forms a
    factor that large, and `LimitError` says so. So does a sum of cliques over
    `limits.query_entries`. Either is raised before any table is touched.
    """
    cap = limits.factor_entries
    neighbours: dict[str, set[str]] = {}
    for scope in scopes:
        scope = set(scope)
        for v in scope:
            neighbours.setdefault(v, set()).update(scope)
    for v, nb in neighbours.items():
        nb.discard(v)
    remaining = set(eliminate)
    for v in remaining:
        neighbours.setdefault(v, set())

    def cost(v: str) -> tuple[int, int, str]:
        nb = neighbours[v]
        weight = _capped_product(itertools.chain((cards[v],), (cards[u] for u in nb)), cap)
        if weight > cap:
            return _OVER, weight, v
        # Each missing edge among the neighbours is seen from both of its ends.
        fill = sum(len(nb - neighbours[x]) - 1 for x in nb) // 2
        return fill, weight, v

    # Eliminating `best` only adds edges among its neighbours, so only their costs and those
    # of their neighbours change: keep the rest (this is most of the cost of a cold query).
    costs = {v: cost(v) for v in remaining}
    order: list[str] = []
    work = 0
    while remaining:
        fill, weight, best = min(costs.values())
        if fill == _OVER:
            raise LimitError(
                f"this query's elimination plan forms a factor over {len(neighbours[best]) + 1} variables "
                f"(eliminating {best!r})",
                "factor_entries", cap,
            )
        work += weight
        if work > limits.query_entries:
            raise LimitError(
                "this query's elimination plan, summed over its factors",
                "query_entries", limits.query_entries,
            )
        nb = neighbours.pop(best)
        for x in nb:
            neighbours[x] |= nb
            neighbours[x].discard(best)
            neighbours[x].discard(x)
        remaining.discard(best)
        del costs[best]
        for x in nb.union(*(neighbours[y] for y in nb)) & remaining:
            costs[x] = cost(x)
        order.append(best)
    return tuple(order)


def _check_table_sizes(
    states: Mapping[str, Sequence[str]], parents: Mapping[str, Sequence[str]], limits: Limits
) -> None:
    total = 0
    for v in states:
        # An unknown parent counts 0 here: the constructor names it.
        size = _capped_product((len(states.get(u, ())) for u in (*parents.get(v, ()), v)), limits.table_entries)
        if size > limits.table_entries:
            raise LimitError(f"the CPT of {v!r}", "table_entries", limits.table_entries)
        total += size
        if total > limits.total_entries:
            raise LimitError("the CPTs in all", "total_entries", limits.total_entries)


def _check_output(variables: Iterable[str], cards: Mapping[str, int], limits: Limits) -> None:
    """The final factor of a query is over the query variables: bound it like the others."""
    if _capped_product((cards[v] for v in variables), limits.factor_entries) > limits.factor_entries:
        raise LimitError(
            f"the answer over the {len(set(variables))} query variables",
            "factor_entries", limits.factor_entries,
        )


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------


class BayesianNetwork:
    """A validated discrete Bayesian network.

    `states[v]` are the named states of `v`; `parents[v]` its parents in CPT axis order;
    `cpts[v]` an array of shape ``tuple(card(p) for p in parents[v]) + (card(v),)``.
    """

    def __init__(
        self,
        states: Mapping[str, Sequence[str]],
        parents: Mapping[str, Sequence[str]],
        cpts: Mapping[str, object],
        name: str = "unknown",
        limits: Limits = LIMITS,
    ) -> None:
        self.name = name
        self.limits = limits
        if len(states) > limits.variables:
            raise LimitError(f"the network has {len(states):,} variables", "variables", limits.variables)
        self.states: dict[str, tuple[str, ...]] = {}
        for v, s in states.items():
            if not isinstance(v, str) or not v:
                raise BayesNetError(f"variable names must be non-empty strings, got {v!r}")
            s = tuple(s)
            if not s:
                raise BayesNetError(f"variable {v!r} has no states")
            if len(s) > limits.states:
                raise LimitError(f"variable {v!r} has {len(s):,} states", "states", limits.states)
            if len(set(s)) != len(s):
                raise BayesNetError(f"variable {v!r} has duplicate states {s}")
            if not all(isinstance(x, str) and x for x in s):
                raise BayesNetError(f"variable {v!r}: states must be non-empty strings")
            self.states[v] = s
        for v in parents:
            if v not in self.states:
                raise BayesNetError(f"parents given for unknown variable {v!r}")
        for v in cpts:
            if v not in self.states:
                raise BayesNetError(f"CPT given for unknown variable {v!r}")
        self.parents: dict[str, tuple[str, ...]] = {}
        for v in self.states:
            ps = tuple(parents.get(v, ()))
            for p in ps:
                if p not in self.states:
                    raise BayesNetError(f"variable {v!r} has unknown parent {p!r}")
                if p == v:
                    raise BayesNetError(f"variable {v!r} is its own parent")
            if len(set(ps)) != len(ps):
                raise BayesNetError(f"variable {v!r} lists a parent twice: {ps}")
            if len(ps) > limits.parents:
                raise LimitError(f"variable {v!r} has {len(ps)} parents", "parents", limits.parents)
            self.parents[v] = ps
        _check_table_sizes(self.states, self.parents, limits)
        self.order: tuple[str, ...] = self._topological_order()
        self.cpts: dict[str, np.ndarray] = {}
        for v in self.states:
            if v not in cpts:
                raise BayesNetError(f"variable {v!r} has no CPT")
            try:
                table = np.array(cpts[v], dtype=float)
            except (TypeError, ValueError) as exc:
                raise BayesNetError(f"variable {v!r}: CPT is not numeric: {exc}") from None
            expected = tuple(len(self.states[p]) for p in self.parents[v]) + (len(self.states[v]),)
            if table.shape != expected:
                raise BayesNetError(
                    f"variable {v!r}: CPT has shape {table.shape}, expected {expected} "
                    f"(parents {self.parents[v]} then the variable)"
                )
            if not np.all(np.isfinite(table)):
                raise BayesNetError(f"variable {v!r}: CPT has non-finite entries")
            if np.any(table < 0):
                raise BayesNetError(f"variable {v!r}: CPT has negative entries")
            sums = table.sum(axis=-1)
            bad = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
            if np.any(bad):
                where = tuple(int(i) for i in np.argwhere(bad)[0])
                config = {p: self.states[p][i] for p, i in zip(self.parents[v], where)}
                raise BayesNetError(
                    f"variable {v!r}: CPT row for parents {config} sums to {float(sums[where])!r}, not 1"
                )
            table.setflags(write=False)
            self.cpts[v] = table
        self.children: dict[str, tuple[str, ...]] = {
            v: tuple(c for c in self.states if v in self.parents[c]) for v in self.states
        }
        self._index = {v: {s: i for i, s in enumerate(ss)} for v, ss in self.states.items()}
        # CPTs with a zero entry: only these can make evidence impossible (see `_plan`).
        self._has_zero = frozenset(v for v, t in self.cpts.items() if not np.all(t > 0))
        self._plan_cache: dict[tuple[frozenset[str], frozenset[str], bool], _Plan] = {}
        self._plan_cache_bytes = 0
        self._map_order_cache: dict[frozenset[str], tuple[str, ...]] = {}

    # -- structure ------------------------------------------------------------------------------

    def _topological_order(self) -> tuple[str, ...]:
        indegree = {v: len(ps) for v, ps in self.parents.items()}
        children: dict[str, list[str]] = {v: [] for v in self.states}
        for v, ps in self.parents.items():
            for p in ps:
                children[p].append(v)
        ready = [v for v in self.states if indegree[v] == 0]
        order: list[str] = []
        while ready:
            v = ready.pop(0)
            order.append(v)
            for c in children[v]:
                indegree[c] -= 1
                if indegree[c] == 0:
                    ready.append(c)
        if len(order) != len(self.states):
            cyclic = sorted(v for v in self.states if indegree[v] > 0)
            raise BayesNetError(f"the graph has a cycle through variable(s) {cyclic}")
        return tuple(order)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(self.states)

    def cardinality(self, variable: str) -> int:
        return len(self.states[self._check_variable(variable)])

    def ancestors(self, variables: Iterable[str]) -> set[str]:
        """The given variables and all their ancestors."""
        seen: set[str] = set()
        stack = list(variables)
        while stack:
            v = stack.pop()
            if v not in seen:
                seen.add(v)
                stack.extend(self.parents[v])
        return seen

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BayesianNetwork):
            return NotImplemented
        return (
            self.states == other.states
            and self.parents == other.parents
            and all(np.array_equal(self.cpts[v], other.cpts[v]) for v in self.states)
        )

    def __repr__(self) -> str:
        return f"BayesianNetwork({self.name!r}, {len(self.states)} variables)"

    # -- checking -------------------------------------------------------------------------------

    def _check_variable(self, variable: str) -> str:
        if variable not in self.states:
            raise BayesNetError(f"unknown variable {variable!r}")
        return variable

    def _state_index(self, variable: str, state: str) -> int:
        self._check_variable(variable)
        try:
            return self._index[variable][state]
        except (KeyError, TypeError):
            raise BayesNetError(
                f"unknown state {state!r} for variable {variable!r} (states {self.states[variable]})"
            ) from None

    def _evidence_indices(self, evidence: Mapping[str, str] | None) -> dict[str, int]:
        return {v: self._state_index(v, s) for v, s in (evidence or {}).items()}

    def joint_probability(self, assignment: Mapping[str, str]) -> float:
        """P(full assignment) as the product of CPT entries."""
        missing = set(self.states) - set(assignment)
        if missing:
            raise BayesNetError(f"assignment misses variables {sorted(missing)}")
        idx = self._evidence_indices(assignment)
        p = 1.0
        for v in self.states:
            p *= float(self.cpts[v][tuple(idx[u] for u in self.parents[v]) + (idx[v],)])
        return p

    # -- exact inference ------------------------------------------------------------------------

    def _bayes_ball(self, query: frozenset[str], observed: frozenset[str]) -> set[str]:
        """The variables whose CPTs P(query | observed) needs: Shachter's (1998) Bayes-ball.

        A ball starts at each query node as if sent from a child. An unobserved node passes a
        ball from a child to its parents and children and a ball from a parent to its children;
        an observed node bounces a ball from a parent back to its parents and stops one from a
        child. The nodes the ball leaves through the top are the requisite ones; everything
        else (barren nodes, and the ancestors of evidence that blocks every trail to the query)
        sums out to a constant, and so does evidence the ball never reaches: d-separated
        evidence does not change the answer.
        """
        top: set[str] = set()
        bottom: set[str] = set()
        schedule = [(q, True) for q in query]  # (node, the ball comes from a child)
        while schedule:
            v, from_child = schedule.pop()
            if v in observed:
                if not from_child and v not in top:
                    top.add(v)
                    schedule.extend((p, True) for p in self.parents[v])
                continue
            if from_child and v not in top:
                top.add(v)
                schedule.extend((p, True) for p in self.parents[v])
            if v not in bottom:
                bottom.add(v)
                schedule.extend((c, False) for c in self.children[v])
        return top

    def _plan(self, keep: frozenset[str], evidence: frozenset[str], prune: bool) -> _Plan:
        """The cached `_Plan` for P(keep, evidence) (up to normalisation when `prune`)."""
        key = (keep, evidence, prune)
        plan = self._plan_cache.get(key)
        if plan is None:
            plan = self._make_plan(keep, evidence, prune)
            # A long-lived daemon: stay bounded in plans and in the arrays they hold (the oldest
            # signature goes first).
            while self._plan_cache and (
                len(self._plan_cache) >= PLAN_CACHE_SIZE
                or self._plan_cache_bytes + plan.nbytes > PLAN_CACHE_BYTES
            ):
                self._plan_cache_bytes -= self._plan_cache.pop(next(iter(self._plan_cache))).nbytes
            if plan.nbytes <= PLAN_CACHE_BYTES:
                self._plan_cache[key] = plan
                self._plan_cache_bytes += plan.nbytes
        return plan

    def _make_plan(self, keep: frozenset[str], evidence: frozenset[str], prune: bool) -> _Plan:
        # Barren nodes (not an ancestor of the query or the evidence) always sum out to 1, so
        # over the ancestral set the normaliser is exactly P(evidence).
        owners = self.ancestors(keep | evidence)
        if prune:
            # Bayes-ball drops more, and the answer stays exact, but the normaliser becomes the
            # sum over the requisite CPTs alone. We promise to report impossible evidence, and
            # P(evidence) = sum of (requisite product) * (dropped product) is > 0 exactly when
            # the requisite sum is, provided every dropped CPT is strictly positive. So if a
            # dropped CPT has a zero entry, this signature keeps the ancestral set.
            requisite = self._bayes_ball(keep, evidence)
            if not (owners - requisite) & self._has_zero:
                owners = requisite
        # In topological order, so that the plan (and the float rounding) is reproducible.
        scopes = {v: (*self.parents[v], v) for v in self.order if v in owners}
        cards = {v: len(s) for v, s in self.states.items()}
        order = _min_fill_order(
            ([u for u in scope if u not in evidence] for scope in scopes.values()),
            owners - keep - evidence,
            cards,
            self.limits,
        )
        _check_output(keep, cards, self.limits)
        return _compile(self.cpts, scopes, evidence, order, tuple(sorted(keep)))

    def _run(self, plan: _Plan, evidence: Mapping[str, int]) -> np.ndarray:
        """Execute `plan`: an array over `plan.outputs` proportional to P(outputs, evidence)."""
        # Every None slot is filled below before a step reads it (steps are in slot order).
        slots = cast("list[np.ndarray]", list(plan.constants))
        for slot, owner, observed_axes in plan.reductions:
            table = self.cpts[owner]
            index: list[int | slice] = [slice(None)] * table.ndim
            for axis, var in observed_axes:
                index[axis] = evidence[var]
            slots[slot] = table[tuple(index)]
        for slot, spec, operands in plan.steps:
            slots[slot] = np.einsum(spec, *[slots[i] for i in operands])
        return np.asarray(slots[-1])

    def elimination_order(
        self, variables: Sequence[str], evidence: Mapping[str, str] | None = None
    ) -> tuple[str, ...]:
        """The (cached) elimination order used by `query_joint(variables, evidence)`."""
        return self._plan(frozenset(variables), frozenset(evidence or {}), True).order

    def query_joint(
        self, variables: Sequence[str], evidence: Mapping[str, str] | None = None
    ) -> dict[tuple[str, ...], float]:
        """P(variables | evidence) as {tuple of states in `variables` order: probability}."""
        variables = tuple(variables)
        if not variables:
            raise BayesNetError("query needs at least one variable")
        for v in variables:
            self._check_variable(v)
        if len(set(variables)) != len(variables):
            raise BayesNetError(f"query lists a variable twice: {variables}")
        ev = self._evidence_indices(evidence)
        both = sorted(set(variables) & set(ev))
        if both:
            raise BayesNetError(f"variable(s) {both} are both queried and observed")
        plan = self._plan(frozenset(variables), frozenset(ev), True)
        values = self._run(plan, ev)
        total = float(values.sum())
        if not total > 0.0:
            raise BayesNetError(f"the evidence {dict(evidence or {})} has probability 0")
        if plan.outputs != variables:
            values = np.transpose(values, [plan.outputs.index(v) for v in variables])
        probabilities = (values / total).ravel().tolist()
        labels = itertools.product(*(self.states[v] for v in variables))
        return dict(zip(labels, probabilities))

    def query(self, variable: str, evidence: Mapping[str, str] | None = None) -> dict[str, float]:
        """P(variable | evidence) as {state: probability}."""
        return {k[0]: p for k, p in self.query_joint((variable,), evidence).items()}

    def probability_of_evidence(self, evidence: Mapping[str, str]) -> float:
        """P(evidence) by variable elimination (0.0 for impossible evidence)."""
        ev = self._evidence_indices(evidence)
        if not ev:
            return 1.0
        return float(self._run(self._plan(frozenset(), frozenset(ev), False), ev))

    def map_assignment(self, evidence: Mapping[str, str] | None = None) -> dict[str, str]:
        """The most probable explanation: argmax over all non-evidence variables of P(x, evidence).

        Ties are broken towards the lower state index.
        """
        ev = self._evidence_indices(evidence)
        free = frozenset(self.states) - frozenset(ev)
        order = self._map_order_cache.get(frozenset(ev))
        if order is None:
            scopes = [[u for u in (*self.parents[v], v) if u not in ev] for v in self.states]
            order = _min_fill_order(scopes, free, {v: len(ss) for v, ss in self.states.items()}, self.limits)
            self._map_order_cache[frozenset(ev)] = order
        factors = [_reduce(_Factor((*self.parents[v], v), self.cpts[v]), ev) for v in self.states]
        traces: list[tuple[str, _Factor]] = []
        for var in order:
            touching = [f for f in factors if var in f.variables]
            factors = [f for f in factors if var not in f.variables]
            combined = _multiply_all(touching)
            traces.append((var, combined))
            factors.append(_marginalise(combined, var, "max"))
        best = float(_multiply_all(factors).values)
        if not best > 0.0:
            raise BayesNetError(f"the evidence {dict(evidence or {})} has probability 0")
        chosen: dict[str, int] = {}
        for var, f in reversed(traces):
            reduced = _reduce(f, chosen)
            assert reduced.variables == (var,)
            chosen[var] = int(np.argmax(reduced.values))
        assert set(chosen) == free
        return {v: self.states[v][chosen[v]] for v in self.states if v in chosen}

    # -- approximate inference ------------------------------------------------------------------

    def likelihood_weighting(
        self,
        variable: str,
        evidence: Mapping[str, str] | None = None,
        samples: int = 10_000,
        seed: int | np.random.Generator | None = 0,
    ) -> dict[str, float]:
        """Estimate P(variable | evidence) by likelihood weighting (vectorised over samples)."""
        self._check_variable(variable)
        ev = self._evidence_indices(evidence)
        if variable in ev:
            raise BayesNetError(f"variable {variable!r} is both queried and observed")
        if samples < 1:
            raise BayesNetError(f"samples must be positive, got {samples}")
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        needed = self.ancestors({variable} | set(ev))
        drawn: dict[str, np.ndarray] = {}
        weights = np.ones(samples)
        for v in self.order:
            if v not in needed:
                continue
            table = self.cpts[v]
            if self.parents[v]:
                rows = table[tuple(drawn[p] for p in self.parents[v])]
            else:
                rows = np.broadcast_to(table, (samples, table.shape[-1]))
            if v in ev:
                weights = weights * rows[:, ev[v]]
                drawn[v] = np.full(samples, ev[v], dtype=np.intp)
            else:
                cdf = np.cumsum(rows, axis=1)
                u = rng.random(samples) * cdf[:, -1]
                idx = (u[:, None] >= cdf).sum(axis=1)
                drawn[v] = np.minimum(idx, table.shape[-1] - 1).astype(np.intp)
        total = float(weights.sum())
        if not total > 0.0:
            raise BayesNetError(
                f"all {samples} samples have weight 0: the evidence {dict(evidence or {})} "
                "is impossible or too unlikely for this many samples"
            )
        counts = np.bincount(drawn[variable], weights=weights, minlength=len(self.states[variable]))
        return {s: float(c / total) for s, c in zip(self.states[variable], counts)}

    # -- learning -------------------------------------------------------------------------------

    def fit_mle(
        self,
        data: Sequence[Mapping[str, str]],
        prior: Literal["bdeu"] | None = None,
        equivalent_sample_size: float = 1.0,
    ) -> BayesianNetwork:
        """A network with this structure and CPTs learned from `data` (see module `fit_mle`)."""
        return fit_mle(self.states, self.parents, data, prior, equivalent_sample_size, name=self.name,
                       limits=self.limits)

    # -- BIF ------------------------------------------------------------------------------------

    @classmethod
    def from_bif(cls, text: str, limits: Limits = LIMITS) -> BayesianNetwork:
        """Parse BIF text, within `limits` (checked before any table is allocated)."""
        return _BifParser(text, limits).parse()

    def to_bif(self) -> str:
        """BIF text; `from_bif(net.to_bif()) == net` exactly (floats are written with repr)."""
        for v, ss in self.states.items():
            for token in (v, *ss):
                if not _NAME.fullmatch(token):
                    raise BayesNetError(f"name {token!r} (variable {v!r}) cannot be written as a BIF token")
        lines = [f"network {self.name if _NAME.fullmatch(self.name) else 'unknown'} {{", "}"]
        for v, ss in self.states.items():
            lines += [
                f"variable {v} {{",
                f"  type discrete [ {len(ss)} ] {{ {', '.join(ss)} }};",
                "}",
            ]
        for v in self.states:
            ps = self.parents[v]
            table = self.cpts[v]
            if not ps:
                lines += [f"probability ( {v} ) {{", f"  table {_floats(table)};", "}"]
                continue
            lines.append(f"probability ( {v} | {', '.join(ps)} ) {{")
            for combo in itertools.product(*(range(len(self.states[p])) for p in ps)):
                labels = ", ".join(self.states[p][i] for p, i in zip(ps, combo))
                lines.append(f"  ({labels}) {_floats(table[combo])};")
            lines.append("}")
        return "\n".join(lines) + "\n"


def _floats(values: np.ndarray) -> str:
    return ", ".join(repr(float(x)) for x in np.ravel(values))


# ----------------------------------------------------------------------------------------------
# BIF parsing
# ----------------------------------------------------------------------------------------------

# A name `to_bif` can write bare: anything the tokeniser reads back as one word (bnlearn's CHILD
# has states such as "<5" and "Asy/Patchy"), except a word that would start a comment.
_NAME = re.compile(r"(?!//|/\*)[^\s{}()\[\];,|\"]+")
_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\f\v]+)|(?P<nl>\n)|(?P<comment>//[^\n]*)|(?P<block>/\*.*?\*/)"""
    r"""|(?P<string>"[^"\n]*")|(?P<punct>[{}()\[\];,|])|(?P<word>[^\s{}()\[\];,|"]+)""",
    re.S,
)


@dataclass(frozen=True)
class _Tok:
    kind: str  # "word", "string", "punct", "eof"
    text: str
    line: int


def _tokenise(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    line = 1
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text.startswith("/*", pos):
                raise BifError("unterminated /* comment", line)
            raise BifError(f"unexpected character {text[pos]!r}", line)
        kind = m.lastgroup
        chunk = m.group()
        if kind == "word":
            toks.append(_Tok("word", chunk, line))
        elif kind == "string":
            toks.append(_Tok("word", chunk[1:-1], line))
        elif kind == "punct":
            toks.append(_Tok("punct", chunk, line))
        line += chunk.count("\n")
        pos = m.end()
    toks.append(_Tok("eof", "", line))
    return toks


class _BifParser:
    def __init__(self, text: str, limits: Limits) -> None:
        self.toks = _tokenise(text)
        self.i = 0
        self.limits = limits

    # token helpers
    def peek(self) -> _Tok:
        return self.toks[self.i]

    def next(self) -> _Tok:
        tok = self.toks[self.i]
        if tok.kind != "eof":
            self.i += 1
        return tok

    def error(self, message: str, tok: _Tok | None = None) -> BifError:
        tok = tok or self.peek()
        found = "end of file" if tok.kind == "eof" else repr(tok.text)
        return BifError(f"{message} (found {found})", tok.line)

    def expect(self, text: str) -> _Tok:
        tok = self.next()
        if tok.text != text or tok.kind == "eof":
            raise self.error(f"expected {text!r}", tok)
        return tok

    def word(self, what: str) -> _Tok:
        tok = self.next()
        if tok.kind != "word":
            raise self.error(f"expected {what}", tok)
        return tok

    def number(self) -> tuple[float, _Tok]:
        tok = self.next()
        try:
            if tok.kind != "word":
                raise ValueError
            value = float(tok.text)
        except ValueError:
            raise self.error("expected a probability", tok) from None
        if not math.isfinite(value):
            raise self.error("expected a finite probability", tok)
        return value, tok

    def skip_property(self) -> None:
        start = self.next()  # 'property'
        while True:
            tok = self.next()
            if tok.kind == "eof":
                raise BifError("unterminated property (missing ';')", start.line)
            if tok.text == ";" and tok.kind == "punct":
                return

    # grammar
    def parse(self) -> BayesianNetwork:
        name = "unknown"
        states: dict[str, tuple[str, ...]] = {}
        state_lines: dict[str, int] = {}
        parents: dict[str, tuple[str, ...]] = {}
        cpts: dict[str, np.ndarray] = {}
        cpt_lines: dict[str, int] = {}
        blocks: list[tuple[_Tok, str, tuple[str, ...], list[tuple[_Tok, list[str] | None, list[float]]]]] = []
        seen_network = False
        while self.peek().kind != "eof":
            tok = self.word("'network', 'variable' or 'probability'")
            if tok.text == "network":
                if seen_network:
                    raise self.error("second 'network' block", tok)
                seen_network = True
                name = self.word("a network name").text
                self.expect("{")
                while self.peek().text != "}":
                    if self.peek().text == "property":
                        self.skip_property()
                    else:
                        raise self.error("expected 'property' or '}' in the network block")
                self.expect("}")
            elif tok.text == "variable":
                var = self.word("a variable name")
                if var.text in states:
                    raise self.error(f"variable {var.text!r} declared twice", var)
                if len(states) >= self.limits.variables:
                    raise LimitError(f"variable {var.text!r} is one too many", "variables",
                                     self.limits.variables, var.line)
                self.expect("{")
                found: tuple[str, ...] | None = None
                while self.peek().text != "}" or self.peek().kind != "punct":
                    head = self.peek()
                    if head.text == "property":
                        self.skip_property()
                        continue
                    if head.text != "type":
                        raise self.error("expected 'type', 'property' or '}'")
                    self.next()
                    if self.word("'discrete'").text != "discrete":
                        raise self.error("only 'discrete' variables are supported", self.toks[self.i - 1])
                    self.expect("[")
                    count_tok = self.word("the number of states")
                    try:
                        count = int(count_tok.text)
                    except ValueError:
                        raise self.error("expected an integer number of states", count_tok) from None
                    if count > self.limits.states:
                        raise LimitError(f"variable {var.text!r} declares {count:,} states", "states",
                                         self.limits.states, count_tok.line)
                    self.expect("]")
                    self.expect("{")
                    names = [self.word("a state name").text]
                    while self.peek().text == ",":
                        self.next()
                        names.append(self.word("a state name").text)
                    self.expect("}")
                    self.expect(";")
                    if count != len(names):
                        raise BifError(
                            f"variable {var.text!r} declares {count} states but lists {len(names)}",
                            count_tok.line,
                        )
                    if len(set(names)) != len(names):
                        raise BifError(f"variable {var.text!r} lists a state twice", count_tok.line)
                    found = tuple(names)
                self.expect("}")
                if found is None:
                    raise BifError(f"variable {var.text!r} has no 'type discrete' declaration", var.line)
                states[var.text] = found
                state_lines[var.text] = var.line
            elif tok.text == "probability":
                self.expect("(")
                var = self.word("a variable name")
                ps: list[str] = []
                if self.peek().text == "|":
                    self.next()
                    ps.append(self.word("a parent name").text)
                    while self.peek().text == ",":
                        self.next()
                        ps.append(self.word("a parent name").text)
                    if len(ps) > self.limits.parents:
                        raise LimitError(f"variable {var.text!r} has {len(ps)} parents", "parents",
                                         self.limits.parents, var.line)
                self.expect(")")
                self.expect("{")
                entries: list[tuple[_Tok, list[str] | None, list[float]]] = []
                while not (self.peek().text == "}" and self.peek().kind == "punct"):
                    head = self.peek()
                    if head.text == "property":
                        self.skip_property()
                        continue
                    config: list[str] | None
                    if head.text == "table":
                        self.next()
                        config = None
                    elif head.text == "default":
                        self.next()
                        config = ["*default*"]
                    elif head.text == "(":
                        self.next()
                        config = [self.word("a parent state").text]
                        while self.peek().text == ",":
                            self.next()
                            config.append(self.word("a parent state").text)
                        self.expect(")")
                    else:
                        raise self.error("expected 'table', 'default', '(' or '}'")
                    probs = [self.number()[0]]
                    while self.peek().text == ",":
                        self.next()
                        probs.append(self.number()[0])
                    self.expect(";")
                    entries.append((head, config, probs))
                self.expect("}")
                blocks.append((var, var.text, tuple(ps), entries))
            else:
                raise self.error("expected 'network', 'variable' or 'probability'", tok)

        total = 0
        for var_tok, v, block_parents, entries in blocks:
            if v not in states:
                raise BifError(f"probability for undeclared variable {v!r}", var_tok.line)
            if v in cpts:
                raise BifError(f"second probability block for {v!r}", var_tok.line)
            for p in block_parents:
                if p not in states:
                    raise BifError(f"variable {v!r} has undeclared parent {p!r}", var_tok.line)
            k = len(states[v])
            shape = tuple(len(states[p]) for p in block_parents) + (k,)
            # Bounded before the table exists: one `default` row can stand for all of it.
            size = _capped_product(shape, self.limits.table_entries)
            if size > self.limits.table_entries:
                raise LimitError(f"the CPT of {v!r}, shape {shape}", "table_entries", self.limits.table_entries,
                                 var_tok.line)
            total += size
            if total > self.limits.total_entries:
                raise LimitError(f"the CPTs up to that of {v!r}", "total_entries", self.limits.total_entries,
                                 var_tok.line)
            table = np.full(shape, np.nan)
            for head, config, probs in entries:
                if config is None:
                    if len(probs) != table.size:
                        raise BifError(
                            f"table for {v!r} has {len(probs)} numbers, expected {table.size}", head.line
                        )
                    # BIF tables list the variable's states slowest for parentless variables;
                    # for tables with parents they are the variable's state outermost (pgmpy/bnlearn).
                    arr = np.array(probs).reshape((k,) + shape[:-1])
                    table[...] = np.moveaxis(arr, 0, -1)
                    _check_rows(v, table, head.line)
                    continue
                if len(probs) != k:
                    raise BifError(f"entry for {v!r} has {len(probs)} numbers, expected {k}", head.line)
                _check_rows(v, np.array(probs), head.line)
                if config == ["*default*"]:
                    table[np.isnan(table[..., 0])] = probs
                    continue
                if len(config) != len(block_parents):
                    raise BifError(
                        f"entry for {v!r} names {len(config)} parent states, expected {len(block_parents)}", head.line
                    )
                index: list[int] = []
                for p, s in zip(block_parents, config):
                    if s not in states[p]:
                        raise BifError(f"unknown state {s!r} of parent {p!r}", head.line)
                    index.append(states[p].index(s))
                table[tuple(index)] = probs
            if np.isnan(table).any():
                missing = tuple(int(i) for i in np.argwhere(np.isnan(table))[0][:-1])
                labels = tuple(states[p][i] for p, i in zip(block_parents, missing))
                raise BifError(f"probability for {v!r} misses the row for parents {labels}", var_tok.line)
            parents[v] = block_parents
            cpts[v] = table
            cpt_lines[v] = var_tok.line
        for v in states:
            if v not in cpts:
                raise BifError(f"variable {v!r} has no probability block", state_lines[v])
        try:
            return BayesianNetwork(states, parents, cpts, name=name, limits=self.limits)
        except LimitError:
            raise
        except BayesNetError as exc:
            bad = next((v for v in states if repr(v) in str(exc)), None)
            line = cpt_lines.get(bad, 1) if bad else 1
            raise BifError(str(exc), line) from None


def _check_rows(variable: str, values: np.ndarray, line: int) -> None:
    if np.any(values < 0):
        raise BifError(f"probability for {variable!r} has a negative entry", line)
    sums = values.sum(axis=-1)
    bad = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if np.any(bad):
        raise BifError(
            f"probability row for {variable!r} sums to "
            f"{float(np.ravel(sums)[np.argmax(np.ravel(bad))])!r}, not 1",
            line,
        )


def read_bif(path: str | Path, limits: Limits = LIMITS) -> BayesianNetwork:
    """Read a BIF file (the only I/O in this module)."""
    return BayesianNetwork.from_bif(Path(path).read_text(encoding="utf-8"), limits)


# ----------------------------------------------------------------------------------------------
# Parameter learning
# ----------------------------------------------------------------------------------------------


def fit_mle(
    states: Mapping[str, Sequence[str]],
    parents: Mapping[str, Sequence[str]],
    data: Sequence[Mapping[str, str]],
    prior: Literal["bdeu"] | None = None,
    equivalent_sample_size: float = 1.0,
    name: str = "unknown",
    limits: Limits = LIMITS,
) -> BayesianNetwork:
    """Learn CPTs from complete data rows (dicts variable -> state).

    `prior=None` is maximum likelihood (a parent configuration never seen gets a uniform row);
    `prior="bdeu"` adds the BDeu pseudo-count ``equivalent_sample_size / (q * r)`` to every cell,
    where q is the number of parent configurations and r the number of states.
    """
    if prior not in (None, "bdeu"):
        raise BayesNetError(f"unknown prior {prior!r}; use None or 'bdeu'")
    if prior == "bdeu" and not equivalent_sample_size > 0:
        raise BayesNetError(f"equivalent_sample_size must be positive, got {equivalent_sample_size}")
    # Validate the structure first with uniform tables (bounded before they are allocated).
    if len(states) > limits.variables:
        raise LimitError(f"the network has {len(states):,} variables", "variables", limits.variables)
    for v, ps in parents.items():
        if len(ps) > limits.parents:
            raise LimitError(f"variable {v!r} has {len(ps)} parents", "parents", limits.parents)
    _check_table_sizes(states, parents, limits)
    uniform = {
        v: np.full(
            tuple(len(states[p]) for p in parents.get(v, ())) + (len(states[v]),), 1.0 / len(states[v])
        )
        for v in states
    }
    structure = BayesianNetwork(states, parents, uniform, name=name, limits=limits)
    index = {v: {s: i for i, s in enumerate(ss)} for v, ss in structure.states.items()}
    counts = {v: np.zeros(t.shape) for v, t in structure.cpts.items()}
    for r, row in enumerate(data):
        idx: dict[str, int] = {}
        for v in structure.states:
            if v not in row:
                raise BayesNetError(f"data row {r} has no value for variable {v!r}")
            try:
                idx[v] = index[v][row[v]]
            except KeyError:
                raise BayesNetError(f"data row {r}: unknown state {row[v]!r} for variable {v!r}") from None
        for v in structure.states:
            counts[v][tuple(idx[p] for p in structure.parents[v]) + (idx[v],)] += 1
    cpts: dict[str, np.ndarray] = {}
    for v, c in counts.items():
        if prior == "bdeu":
            c = c + equivalent_sample_size / c.size
        totals = c.sum(axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            table = np.where(totals > 0, c / np.where(totals > 0, totals, 1.0), 1.0 / len(structure.states[v]))
        cpts[v] = table
    return BayesianNetwork(structure.states, structure.parents, cpts, name=name, limits=limits)
