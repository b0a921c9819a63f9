"""Policy data: classification levels, Casbin model and policy (files, not code)."""
