"""Server plumbing shared by the gateway and the adapters: interceptors, telemetry, TLS, keys on disk."""
