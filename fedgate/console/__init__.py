"""`fedgate console`: the web console for security officers and departments."""
