"""The protocol runtime: runs any sans-I/O machine of protocols/ in the daemon (driver.py), over
per-peer links (links.py). See ARCHITECTURE.md, "How to add a protocol"."""

from node.runtime.driver import Call, CallFailed, Frame, Gossip, Host, Input, Runtime, Timer, Turn, Volatile, clock, now_ms, seal_messages

__all__ = ["Call", "CallFailed", "Frame", "Gossip", "Host", "Input", "Runtime", "Timer", "Turn", "Volatile", "clock", "now_ms", "seal_messages"]
