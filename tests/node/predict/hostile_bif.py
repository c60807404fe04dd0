"""Small BIF texts that stand for large tables or expensive queries (issue 11, item 2)."""

from __future__ import annotations


def one_default_row(parents: int, states: int = 2, parent_states: int | None = None) -> str:
    """`x` with `parents` parents and a single `default` row: a few bytes a parent, and a CPT of
    states * parent_states**parents entries once expanded (21 binary parents: about 2 KB)."""
    k = states if parent_states is None else parent_states
    names = [f"p{i}" for i in range(parents)]
    out = ["network hostile {", "}"]
    for v in names:
        out.append(f"variable {v} {{ type discrete [ {k} ] {{ {', '.join(f's{j}' for j in range(k))} }}; }}")
    out.append(f"variable x {{ type discrete [ {states} ] {{ {', '.join(f's{j}' for j in range(states))} }}; }}")
    for v in names:
        out.append(f"probability ( {v} ) {{ table {', '.join([repr(1 / k)] * k)}; }}")
    row = ", ".join([repr(1 / states)] * states)
    head = f"probability ( x | {', '.join(names)} )" if names else "probability ( x )"
    out.append(f"{head} {{ default {row}; }}" if names else f"{head} {{ table {row}; }}")
    return "\n".join(out) + "\n"


def all_pairs(roots: int) -> tuple[str, dict[str, str]]:
    """Binary roots r_i and one child per pair of roots, with evidence on every child: every table
    has at most 8 entries, but the evidence couples all the roots, so a query's elimination
    forms a factor over all of them (2**roots entries)."""
    rs = [f"r{i}" for i in range(roots)]
    pairs = [(a, b) for i, a in enumerate(rs) for b in rs[i + 1 :]]
    children = [f"c_{a}_{b}" for a, b in pairs]
    out = ["network dense {", "}"]
    for v in rs + children:
        out.append(f"variable {v} {{ type discrete [ 2 ] {{ y, n }}; }}")
    for v in rs:
        out.append(f"probability ( {v} ) {{ table 0.5, 0.5; }}")
    for c, (a, b) in zip(children, pairs):
        out.append(f"probability ( {c} | {a}, {b} ) {{ (y, y) 0.9, 0.1; default 0.4, 0.6; }}")
    return "\n".join(out) + "\n", {c: "y" for c in children}
