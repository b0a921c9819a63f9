"""The sans-I/O query core: plans, protocols, state machines, audit parameters and safeguards.

Nothing here opens a socket or a file. The gateway's servicers and the
adapter's sessions are pumps that move typed events between these machines
and their gRPC streams, so each query's choreography is tested without servers.
"""
