"""The command table is the CLI: the parser has exactly its commands, each leaf dispatches to the
handler its entry names, and an entry that is neither a leaf nor a group is refused at import."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from node import cli


def table_leaves(commands: dict[str, cli.Command], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], cli.Command]]:
    for name, command in commands.items():
        if command.actions:
            yield from table_leaves({c.name: c for c in command.actions}, (*path, name))
        else:
            yield (*path, name), command


def parser_leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for name, sub in subs[0].choices.items():
        yield from parser_leaves(sub, (*path, name))


def test_every_leaf_of_the_parser_runs_the_handler_of_its_entry() -> None:
    table = dict(table_leaves(cli.COMMANDS))
    parsers = dict(parser_leaves(cli._parser()))
    assert set(parsers) == set(table)
    assert len(table) > 20
    for path, parser in parsers.items():
        assert parser.get_default("handler") is table[path].run, path


def test_a_group_names_the_action_the_handler_sees() -> None:
    args = cli._parser().parse_args(["federation", "leave"])
    assert args.handler is cli.cmd_federation_vote and args.action == "leave" and args.peer is None
    args = cli._parser().parse_args(["predict", "bn", "query", "net", "A", "B=yes"])
    assert args.handler is cli.cmd_predict_bn_query and args.bn_action == "query" and args.evidence == ["B=yes"]


def test_an_entry_is_a_leaf_or_a_group() -> None:
    with pytest.raises(ValueError, match="not both or neither"):
        cli.Command("x", "neither")
    with pytest.raises(ValueError, match="not both or neither"):
        cli.Command("x", "both", run=cli.cmd_status, actions=(cli.Command("y", None, run=cli.cmd_status),))
    with pytest.raises(ValueError, match="duplicate"):
        cli.Command("x", "twice y", actions=(cli.Command("y", None, run=cli.cmd_status), cli.Command("y", None, run=cli.cmd_id)))
