"""The command palette's provider: every control method the daemon offers, from ``rpc.methods``.

Choosing one opens its params form (``CallScreen``). The list is asked of the daemon each time
the palette opens, so it always matches the daemon actually running (a newer daemon's methods
appear without a TUI upgrade).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.forms import CallScreen

if TYPE_CHECKING:
    from tui.app import SovereignApp


class ControlMethods(Provider):
    """Hits for "call <method>"; empty while the daemon is unreachable."""

    async def startup(self) -> None:
        app: SovereignApp = self.app  # type: ignore[assignment]
        self.methods: list[dict[str, Any]] = []
        try:
            answer = await app.call("rpc.methods", None)
        except Exception as exc:  # noqa: BLE001 - no daemon, no methods; say why instead
            app.notify(f"cannot list control methods: {exc}", severity="warning")
            return
        if isinstance(answer, list):
            self.methods = [m for m in answer if isinstance(m, dict) and isinstance(m.get("name"), str)]

    def _open(self, schema: dict[str, Any]) -> None:
        app: SovereignApp = self.app  # type: ignore[assignment]
        app.push_screen(CallScreen(schema, app.call))

    async def discover(self) -> Hits:
        for m in self.methods:
            yield DiscoveryHit(f"call {m['name']}", partial(self._open, m), help=str(m.get("doc") or ""))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for m in self.methods:
            text = f"call {m['name']}"
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(self._open, m), help=str(m.get("doc") or ""))
