"""`sovereign demo`: a local federation doing real work, and surviving the loss of replicas."""

from node.demo.run import DemoError, run_demo

__all__ = ["DemoError", "run_demo"]
