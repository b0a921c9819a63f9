from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BudgetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class BudgetUse(_message.Message):
    __slots__ = ("agency", "dataset", "period", "spent", "budget")
    AGENCY_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    SPENT_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    agency: str
    dataset: str
    period: str
    spent: float
    budget: float
    def __init__(self, agency: _Optional[str] = ..., dataset: _Optional[str] = ..., period: _Optional[str] = ..., spent: _Optional[float] = ..., budget: _Optional[float] = ...) -> None: ...

class BudgetsResponse(_message.Message):
    __slots__ = ("uses",)
    USES_FIELD_NUMBER: _ClassVar[int]
    uses: _containers.RepeatedCompositeFieldContainer[BudgetUse]
    def __init__(self, uses: _Optional[_Iterable[_Union[BudgetUse, _Mapping]]] = ...) -> None: ...

class ReloadPolicyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadPolicyResponse(_message.Message):
    __slots__ = ("rules", "digest")
    RULES_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    rules: int
    digest: str
    def __init__(self, rules: _Optional[int] = ..., digest: _Optional[str] = ...) -> None: ...
