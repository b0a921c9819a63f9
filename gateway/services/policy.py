"""PolicyService: reload the rules on request."""

from __future__ import annotations

import asyncio

import grpc

from fedgate.gateway.policy import Policy
from fedgate.server.interceptors import current_identity, record_action
from fedgate.protos.fedgate.v1 import policy_pb2, policy_pb2_grpc


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    """Reloads the policy files on an officer's request.

    Audited like every call; if the new rules fail to load, the old ones stay in force.
    """

    def __init__(self, policy: Policy) -> None:
        self._policy = policy

    async def Reload(self, request: policy_pb2.ReloadPolicyRequest,
                     context: grpc.aio.ServicerContext) -> policy_pb2.ReloadPolicyResponse:
        record = record_action("policy.reload")
        # Decided by the rules in force before the reload.
        record.rule = self._policy.decide_for(current_identity(), "policy.*", "policy.reload").require()
        rules = await asyncio.to_thread(self._policy.reload)
        record.result_sizes["rules"] = rules.rules
        return policy_pb2.ReloadPolicyResponse(rules=rules.rules, digest=rules.digest)
