"""fedgate: a privacy-preserving federated data-sharing gateway (可用不可见)."""

import os

# gRPC's fork handlers restart its poller in a child that is about to exec (subprocess.Popen with close_fds:
# an adapter launching Spark's JVM, a test starting a server); the child then finds the poller's fd closed and
# can die before exec (grpc/grpc#43055: Spark's JAVA_GATEWAY_EXITED once under load). fedgate never forks a
# process to go on using gRPC in it (its worker pools spawn), so it needs no fork support. Set before gRPC is
# first imported, which is always through this package.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

__version__ = "0.1.0"
