"""The supervisor's and security officer's client library: gateway calls, audit verification."""
