from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class CountRowsRequest(_message.Message):
    __slots__ = ("dataset", "purpose", "case_number")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CASE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    purpose: str
    case_number: str
    def __init__(self, dataset: _Optional[str] = ..., purpose: _Optional[str] = ..., case_number: _Optional[str] = ...) -> None: ...

class CountRowsResponse(_message.Message):
    __slots__ = ("rows", "audit_index")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    rows: int
    audit_index: int
    def __init__(self, rows: _Optional[int] = ..., audit_index: _Optional[int] = ...) -> None: ...
