"""ApprovalService: a department's queue of requests its rules hold, and its approvers' decisions."""

from __future__ import annotations

import grpc

from fedgate.core.errors import PermissionDenied
from fedgate.core.identity import Role
from fedgate.gateway.approvals import ApprovalDesk, Held, PENDING
from fedgate.gateway.policy import Policy
from fedgate.protos.fedgate.v1 import approvals_pb2, approvals_pb2_grpc
from fedgate.server.interceptors import current_identity, record_action

DEFAULT_WINDOW_S = 30 * 86_400


class ApprovalServicer(approvals_pb2_grpc.ApprovalServiceServicer):
    def __init__(self, desk: ApprovalDesk, policy: Policy, origin: str) -> None:
        self._desk = desk
        self._policy = policy
        self._origin = origin

    async def ListHeld(self, request: approvals_pb2.ListHeldRequest,
                       context: grpc.aio.ServicerContext) -> approvals_pb2.ListHeldResponse:
        record = record_action("approval.list")
        caller = current_identity()
        record.rule = self._policy.decide_for(caller, f"{caller.org}.*", "approval.decide").require()
        if caller.role is not Role.DEPARTMENT:
            raise PermissionDenied("only a department's certificate lists the requests held for its approval")
        now = self._desk.now()
        since = request.since or int(now) - DEFAULT_WINDOW_S
        held = [h for h in await self._desk.for_department(caller.org, since)
                if request.all or h.state(now) == PENDING]
        record.result_sizes["held"] = len(held)
        return approvals_pb2.ListHeldResponse(requests=[await self._to_proto(h) for h in held])

    async def GetHeld(self, request: approvals_pb2.GetHeldRequest,
                      context: grpc.aio.ServicerContext) -> approvals_pb2.HeldRequest:
        record = record_action("approval.show")
        caller = current_identity()
        h = await self._desk.visible(caller, record, request.query_id)
        return await self._to_proto(h)

    async def Decide(self, request: approvals_pb2.DecideRequest,
                     context: grpc.aio.ServicerContext) -> approvals_pb2.HeldRequest:
        record = record_action("approval.decide")
        caller = current_identity()
        record.rule = self._policy.decide_for(caller, f"{caller.org}.*", "approval.decide").require()
        h = await self._desk.decide(caller, record, request.query_id, request.approval, request.reason)
        return await self._to_proto(h)

    async def _to_proto(self, h: Held) -> approvals_pb2.HeldRequest:
        now = self._desk.now()
        missing = h.missing(now)
        entry = await self._desk.entry(h)
        return approvals_pb2.HeldRequest(
            query_id=h.query_id, entry_index=h.entry_index, entry=entry.canonical(), state=h.state(now),
            created_at=h.created_at, expires_at=h.expires_at, log_origin=self._origin,
            needs=[approvals_pb2.ApprovalNeed(department=d, rule=n.rule, approvers=n.approvers,
                                              missing=missing.get(d, 0)) for d, n in h.needs.items()],
            decisions=[approvals_pb2.ApprovalDecision(department=v.department, approver=v.approver,
                                                      decision=v.decision, reason=v.reason, decided_at=v.decided_at)
                       for v in h.votes])
