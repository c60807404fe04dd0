"""Modal screens: a params form for any control method, connect, transfer, and help.

Forms only collect and check input; the call itself goes through the function the app passes in
(``Caller``), and its result or error is shown in the form, so a mistake can be corrected and
sent again without retyping.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from node.rpc import RpcError

Caller = Callable[[str, dict[str, Any] | None], Awaitable[Any]]


class FormError(ValueError):
    """A field's text cannot be turned into the value the method expects."""


def parse_field(name: str, type_name: str, text: str) -> Any:
    """The JSON value for one params field typed as text in a form.

    Strings are taken as typed (no quotes needed); every other type is read as JSON, so
    ``12``, ``true``, ``["a", "b"]`` and ``{"k": 1}`` work as they look.
    """
    if type_name == "str":
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        if "str" in type_name.split(" | "):
            return text  # e.g. "str | None": plain text is the string
        raise FormError(f"{name}: expected {type_name} as JSON, got {text!r}") from None
    return value


def build_params(fields: list[dict[str, Any]], texts: dict[str, str]) -> dict[str, Any] | None:
    """Params for a call from the form's texts: empty optional fields are left to their default."""
    params: dict[str, Any] = {}
    for f in fields:
        name = str(f.get("name"))
        text = texts.get(name, "")
        if text == "":
            if f.get("required"):
                raise FormError(f"{name} is required")
            continue
        params[name] = parse_field(name, str(f.get("type", "Any")), text)
    return params or None


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, RpcError):
        extra = f"\n{json.dumps(exc.data, indent=2, sort_keys=True)}" if exc.data is not None else ""
        return f"error {exc.code}: {exc.message}{extra}"
    return f"{type(exc).__name__}: {exc}"


class CallScreen(ModalScreen[None]):
    """A form for one control method, built from its ``rpc.methods`` schema."""

    BINDINGS = [Binding("escape", "dismiss", "close")]

    def __init__(self, schema: dict[str, Any], call: Caller) -> None:
        super().__init__()
        self.schema = schema
        self.fields: list[dict[str, Any]] = [f for f in schema.get("params", []) if isinstance(f, dict)]
        self.call = call

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(str(self.schema.get("name")), style="bold"), classes="title")
            yield Static(Text(str(self.schema.get("doc") or "")), classes="doc")
            for f in self.fields:
                kind = str(f.get("type", "Any"))
                hint = "required" if f.get("required") else f"default {json.dumps(f.get('default'))}"
                yield Label(f"{f.get('name')} ({kind}, {hint})")
                yield Input(placeholder=kind, id=f"field-{f.get('name')}", classes="field")
            with Horizontal(classes="buttons"):
                yield Button("Call", variant="primary", id="call")
                yield Button("Close", id="close")
            with VerticalScroll(classes="result-box"):
                yield Static("", id="result")

    def on_mount(self) -> None:
        inputs = self.query(Input)
        (inputs.first() if inputs else self.query_one("#call", Button)).focus()

    @on(Button.Pressed, "#close")
    def close(self) -> None:
        self.dismiss(None)

    @on(Button.Pressed, "#call")
    @on(Input.Submitted)
    def submit(self) -> None:
        texts = {str(f.get("name")): self.query_one(f"#field-{f.get('name')}", Input).value for f in self.fields}
        try:
            params = build_params(self.fields, texts)
        except FormError as exc:
            self._show(Text(str(exc), style="red"))
            return
        self._show(Text("calling..."))
        self._run(params)

    @work(exclusive=True, group="call")
    async def _run(self, params: dict[str, Any] | None) -> None:
        try:
            result = await self.call(str(self.schema.get("name")), params)
        except Exception as exc:  # noqa: BLE001 - every failure is shown, the form stays usable
            self._show(Text(describe_error(exc), style="red"))
            return
        self._show(Text(json.dumps(result, indent=2, sort_keys=True)))

    def _show(self, text: Text | str) -> None:
        self.query_one("#result", Static).update(text)


class PromptScreen(ModalScreen[dict[str, str] | None]):
    """A few labelled inputs; dismissed with their values, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, title: str, fields: list[tuple[str, str, str]]) -> None:
        """``fields``: (name, label, initial value)."""
        super().__init__()
        self.title_text = title
        self.prompt_fields = fields

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(Text(self.title_text, style="bold"), classes="title")
            for name, label, value in self.prompt_fields:
                yield Label(label)
                yield Input(value=value, id=f"prompt-{name}", classes="field")
            with Horizontal(classes="buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query(Input).first().focus()

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted)
    def ok(self) -> None:
        self.dismiss({name: self.query_one(f"#prompt-{name}", Input).value.strip() for name, _, _ in self.prompt_fields})

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


HELP_TEXT = """\
[b]sovereign tui[/b]: watch and steer one daemon through its control socket.

[b]Views[/b]       o overview   p peers   f federation   e events
[b]Anywhere[/b]    ctrl+p palette: any control method, with a form
            ctrl+t light/dark theme   ? this help   q quit
[b]Peers[/b]       s sort (or click a column; again to reverse)
            c connect to an address   d disconnect selected
            b add the selected peer as a bootstrap peer
[b]Federation[/b]  t transfer to a peer
[b]Events[/b]      / filter by topic prefix   space pause/resume

When the daemon stops, the TUI says "disconnected" and
reconnects by itself when the daemon is back.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(HELP_TEXT)
            yield Button("Close", id="close")

    @on(Button.Pressed, "#close")
    def close(self) -> None:
        self.dismiss(None)
