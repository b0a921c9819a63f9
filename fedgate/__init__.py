"""fedgate: a privacy-preserving federated data-sharing gateway (可用不可见)."""

__version__ = "0.1.0"
