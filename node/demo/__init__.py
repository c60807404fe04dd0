"""`sovereign demo`: a local federation doing real work, and surviving the loss of replicas."""

from node.demo.errors import DemoError
from node.demo.run import run_demo

__all__ = ["DemoError", "run_demo"]
