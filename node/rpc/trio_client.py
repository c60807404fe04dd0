"""The trio control-socket client (tests, async scripts): a stream loop over ``Connection``.

trio is imported lazily, inside the methods: ``node.rpc`` re-exports this class and the CLI
imports ``node.rpc`` on every run.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

from node.rpc.connection import (
    CLIENT_MAX_LINE,
    Connection,
    ConnectionClosed,
    DaemonNotRunning,
    ErrorResponse,
    Event,
    LineTooLong,
    Params,
    Response,
    RpcError,
    event_params,
)
from node.rpc.sync_client import FAREWELL_WAIT, RECV_SIZE, warn_ignored

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    import trio

Answer = Response | ErrorResponse


class _Waiter:
    __slots__ = ("answer", "event")

    def __init__(self, event: trio.Event) -> None:
        self.event = event
        self.answer: Answer | None = None


class AsyncControlClient:
    """trio client for tests and async scripts; many calls may share one connection.

    Two ways to use it::

        async with AsyncControlClient(path) as client:      # or: client = await ...connect(path)
            await client.subscribe(["peer"])                 #     async with client: ...
            async for event in client.events(): ...

    Inside ``async with`` a reader task (in a nursery the client owns) routes responses by id to
    their callers and events to ``events()``, so calls run concurrently and events flow while
    calls are made. Without ``async with`` (``await connect(...)``, then ``call``, then
    ``aclose``), calls are serialised, each reading its own response, and events are only
    collected while a call waits. Events beyond ``max_events`` unread are dropped and counted in
    ``dropped_events`` (the reader must never block, or call responses would stall behind events).
    ``events()`` ends when the connection closes.
    """

    def __init__(
        self,
        socket_path: str | os.PathLike[str],
        *,
        max_line: int = CLIENT_MAX_LINE,
        max_events: int = 1000,
    ) -> None:
        import trio

        self.socket_path = os.fspath(socket_path)
        self.dropped_events = 0
        self._stream: trio.SocketStream | None = None
        self._rpc = Connection.client(max_line=max_line)
        self._received: deque[Event] = deque()  # events of _rpc not looked at yet
        self._pending: dict[int, _Waiter] = {}
        self._send_lock = trio.Lock()
        self._inline_lock = trio.Lock()
        self._events_in, self._events_out = trio.open_memory_channel[Any](max_events)
        self._closed: BaseException | None = None
        # The error the daemon sent before hanging up (a line too long, too many clients), if any.
        self._refusal: RpcError | None = None
        self._reader_running = False
        self._reader_done = trio.Event()
        self._nursery_cm: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._nursery: trio.Nursery | None = None

    @classmethod
    async def connect(cls, socket_path: str | os.PathLike[str], **kwargs: Any) -> AsyncControlClient:
        client = cls(socket_path, **kwargs)
        await client._open()
        return client

    async def _open(self) -> None:
        import trio

        if self._stream is not None:
            return
        try:
            self._stream = await trio.open_unix_socket(self.socket_path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(f"no daemon is listening on {self.socket_path}") from exc

    async def __aenter__(self) -> Self:
        import trio

        await self._open()
        if self._inline_lock.locked() or self._nursery_cm is not None:
            raise RuntimeError("enter `async with` once, and not while a call is in progress")
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        self._reader_running = True
        self._nursery.start_soon(self._reader)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._nursery is not None and self._nursery_cm is not None
        try:
            await self.aclose()  # closing the stream ends the reader
        finally:
            # Cancel only now: a checkpoint between cancelling and leaving the nursery would raise
            # a Cancelled that belongs to the nursery's scope but that it would never catch.
            self._nursery.cancel_scope.cancel()
            # The body's exception is deliberately not passed in: the nursery would wrap it in an
            # ExceptionGroup, and its only child (the reader) never raises.
            await self._nursery_cm.__aexit__(None, None, None)

    async def aclose(self) -> None:
        import trio

        self._shutdown(ConnectionError("the control client was closed"))
        if self._stream is not None:
            await trio.aclose_forcefully(self._stream)

    def events(self) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        """Event notifications: ``{"topic", "ts", "data"}`` dicts, in arrival order."""
        return self._events_out

    async def subscribe(self, topics: Sequence[str] = ()) -> list[str]:
        """Subscribe to topic prefixes (empty or ``["*"]``: everything); returns what is active."""
        result = await self.call("events.subscribe", {"topics": list(topics)})
        return list(result["subscribed"])

    async def call(self, method: str, params: Params = None) -> Any:
        import trio

        request_id, data = self._rpc.send_request(method, params)
        if not self._reader_running:
            return await self._call_inline(request_id, data)
        self._check_open()
        waiter = _Waiter(trio.Event())
        self._pending[request_id] = waiter
        try:
            await self._send(data)
            await waiter.event.wait()
        finally:
            del self._pending[request_id]
        if waiter.answer is None:
            if self._refusal is not None:
                raise self._refusal
            raise ConnectionError("the control connection closed during the call") from self._closed
        return waiter.answer.unwrap()

    async def notify(self, method: str, params: Params = None) -> None:
        self._check_open()
        await self._send(self._rpc.send_notification(method, params))

    def _check_open(self) -> None:
        if self._closed is not None:
            raise ConnectionError("the control connection is closed") from self._closed
        if self._stream is None:
            raise RuntimeError("not connected: use `await AsyncControlClient.connect(...)` or `async with`")

    async def _send(self, data: bytes, *, may_read: bool = False) -> None:
        """Write one line; ``may_read``: the caller owns reading (an inline call), so a failed
        write may read the daemon's last line itself."""
        import trio

        assert self._stream is not None
        async with self._send_lock:
            # Cancelled here, nothing was sent and the connection stays usable; send_all's own
            # first check cannot then fire, as no time passes in between.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                await self._stream.send_all(data)
            except trio.BrokenResourceError as exc:
                # The daemon hung up while we wrote; it may have said why first, and that
                # answer, not the broken pipe, is the error.
                await self._await_farewell(may_read)
                self._shutdown(exc)
                if self._refusal is not None:
                    raise self._refusal from None
                raise ConnectionError("the control connection is closed") from exc
            except trio.ClosedResourceError as exc:
                self._shutdown(exc)
                raise ConnectionError("the control connection is closed") from exc
            except BaseException as exc:
                # Cancelled mid-send: part of a line may be on the wire, so framing is lost.
                self._shutdown(exc)
                await trio.aclose_forcefully(self._stream)
                raise

    async def _await_farewell(self, may_read: bool) -> None:
        """Give the daemon's last line a moment to arrive: read by the reader task if it runs,
        else here when the caller owns reading."""
        import trio

        with trio.move_on_after(FAREWELL_WAIT):
            if self._reader_running:
                await self._reader_done.wait()
                return
            while may_read and self._refusal is None:
                event = await self._next_event()
                if event is None:
                    return
                if isinstance(event, ErrorResponse) and event.is_refusal:
                    self._refusal = event.error

    async def _next_event(self) -> Answer | dict[str, Any] | None:
        """The next answer or event (its params); None once the daemon has closed the stream.
        ``ConnectionError`` for a line over ``max_line`` (framing is lost)."""
        import trio

        assert self._stream is not None
        while True:
            while self._received:
                event = self._received.popleft()
                if isinstance(event, Response | ErrorResponse):
                    return event
                if (params := event_params(event)) is not None:
                    return params
                if isinstance(event, ConnectionClosed):
                    return None
                if isinstance(event, LineTooLong):
                    raise ConnectionError(f"the daemon sent a line over {event.limit} bytes")
                warn_ignored(event)
            if self._rpc.ended:
                return None
            try:
                data = await self._stream.receive_some(RECV_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            self._received.extend(self._rpc.receive_data(data))

    async def _call_inline(self, request_id: int, data: bytes) -> Any:
        async with self._inline_lock:
            self._check_open()
            await self._send(data, may_read=True)
            while True:
                event = await self._next_event()
                if event is None:
                    exc = ConnectionError("the daemon closed the control connection")
                    self._shutdown(exc)
                    raise exc
                if isinstance(event, dict):
                    self._deliver_event(event)
                elif event.id == request_id:
                    return event.unwrap()
                elif isinstance(event, ErrorResponse) and event.is_refusal:
                    self._refusal = event.error
                    self._shutdown(self._refusal)
                    raise self._refusal

    async def _reader(self) -> None:
        reason: BaseException = ConnectionError("the daemon closed the control connection")
        try:
            while (event := await self._next_event()) is not None:
                if isinstance(event, dict):
                    self._deliver_event(event)
                elif isinstance(event, ErrorResponse) and event.is_refusal:
                    # The daemon refused a line whole (too long, too many clients) and hangs up:
                    # that error, not "connection closed", is every waiting call's answer.
                    self._refusal = event.error
                    for waiter in self._pending.values():
                        if waiter.answer is None:
                            waiter.answer = event
                            waiter.event.set()
                else:
                    # Answers come only to ids this connection sent (ints); a caller cancelled
                    # meanwhile has no waiter left, and its late answer is dropped.
                    answered = self._pending.get(event.id) if isinstance(event.id, int) else None
                    if answered is not None:
                        answered.answer = event
                        answered.event.set()
        except ConnectionError as exc:  # a line over max_line: framing is lost
            reason = exc
        finally:
            self._reader_running = False
            self._reader_done.set()
            self._shutdown(reason)

    def _deliver_event(self, params: Any) -> None:
        import trio

        try:
            self._events_in.send_nowait(params)
        except trio.WouldBlock:
            self.dropped_events += 1
        except trio.ClosedResourceError:
            pass

    def _shutdown(self, reason: BaseException) -> None:
        """Fail every waiting call and end ``events()``; idempotent."""
        if self._closed is None:
            self._closed = reason
        for waiter in self._pending.values():
            waiter.event.set()
        self._events_in.close()
