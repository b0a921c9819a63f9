"""PolicyService: reload the rules on request; list privacy budgets."""

from __future__ import annotations

import asyncio

import grpc

from fedgate.core.errors import PermissionDenied
from fedgate.core.identity import Role
from fedgate.gateway.budget import BudgetBook
from fedgate.gateway.policy import Policy
from fedgate.query.noise import from_micro
from fedgate.server.interceptors import current_identity, record_action
from fedgate.protos.fedgate.v1 import policy_pb2, policy_pb2_grpc


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    """Reloads the policy files on an officer's request.

    Audited like every call; if the new rules fail to load, the old ones stay in force.
    """

    def __init__(self, policy: Policy, budgets: BudgetBook | None = None) -> None:
        self._policy = policy
        self._budgets = budgets

    async def Reload(self, request: policy_pb2.ReloadPolicyRequest,
                     context: grpc.aio.ServicerContext) -> policy_pb2.ReloadPolicyResponse:
        record = record_action("policy.reload")
        # Decided by the rules in force before the reload.
        record.rule = self._policy.decide_for(current_identity(), "policy.*", "policy.reload").require()
        rules = await asyncio.to_thread(self._policy.reload)
        record.result_sizes["rules"] = rules.rules
        return policy_pb2.ReloadPolicyResponse(rules=rules.rules, digest=rules.digest)

    async def Budgets(self, request: policy_pb2.BudgetsRequest,
                      context: grpc.aio.ServicerContext) -> policy_pb2.BudgetsResponse:
        record = record_action("budget.show")
        caller = current_identity()
        # Officers oversee every agency; a supervisor sees what its own agency has left, to plan its queries.
        if caller.role is Role.OFFICER:
            agency = None
        elif caller.role is Role.SUPERVISOR:
            agency = caller.org
        else:
            raise PermissionDenied("privacy budgets are shown to security officers and supervisors only")
        uses = await asyncio.to_thread(self._budgets.uses, agency) if self._budgets else []
        record.result_sizes["budgets"] = len(uses)
        return policy_pb2.BudgetsResponse(uses=[
            policy_pb2.BudgetUse(agency=u.agency, dataset=u.dataset, period=u.period, spent=from_micro(u.spent_micro),
                                 budget=from_micro(u.budget_micro)) for u in uses])
