from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListHeldRequest(_message.Message):
    __slots__ = ("since", "all")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    since: int
    all: bool
    def __init__(self, since: _Optional[int] = ..., all: _Optional[bool] = ...) -> None: ...

class ListHeldResponse(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[HeldRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[HeldRequest, _Mapping]]] = ...) -> None: ...

class GetHeldRequest(_message.Message):
    __slots__ = ("query_id",)
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    def __init__(self, query_id: _Optional[str] = ...) -> None: ...

class DecideRequest(_message.Message):
    __slots__ = ("query_id", "approval", "reason")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    approval: str
    reason: str
    def __init__(self, query_id: _Optional[str] = ..., approval: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ApprovalNeed(_message.Message):
    __slots__ = ("department", "rule", "approvers", "missing")
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    APPROVERS_FIELD_NUMBER: _ClassVar[int]
    MISSING_FIELD_NUMBER: _ClassVar[int]
    department: str
    rule: str
    approvers: int
    missing: int
    def __init__(self, department: _Optional[str] = ..., rule: _Optional[str] = ..., approvers: _Optional[int] = ..., missing: _Optional[int] = ...) -> None: ...

class ApprovalDecision(_message.Message):
    __slots__ = ("department", "approver", "decision", "reason", "decided_at")
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    APPROVER_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    department: str
    approver: str
    decision: str
    reason: str
    decided_at: int
    def __init__(self, department: _Optional[str] = ..., approver: _Optional[str] = ..., decision: _Optional[str] = ..., reason: _Optional[str] = ..., decided_at: _Optional[int] = ...) -> None: ...

class HeldRequest(_message.Message):
    __slots__ = ("query_id", "entry_index", "entry", "state", "created_at", "expires_at", "needs", "decisions", "log_origin")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    ENTRY_INDEX_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    NEEDS_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    LOG_ORIGIN_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    entry_index: int
    entry: bytes
    state: str
    created_at: int
    expires_at: int
    needs: _containers.RepeatedCompositeFieldContainer[ApprovalNeed]
    decisions: _containers.RepeatedCompositeFieldContainer[ApprovalDecision]
    log_origin: str
    def __init__(self, query_id: _Optional[str] = ..., entry_index: _Optional[int] = ..., entry: _Optional[bytes] = ..., state: _Optional[str] = ..., created_at: _Optional[int] = ..., expires_at: _Optional[int] = ..., needs: _Optional[_Iterable[_Union[ApprovalNeed, _Mapping]]] = ..., decisions: _Optional[_Iterable[_Union[ApprovalDecision, _Mapping]]] = ..., log_origin: _Optional[str] = ...) -> None: ...
