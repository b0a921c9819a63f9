from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CountRowsRequest(_message.Message):
    __slots__ = ("dataset", "purpose", "case_number", "filter")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CASE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    purpose: str
    case_number: str
    filter: str
    def __init__(self, dataset: _Optional[str] = ..., purpose: _Optional[str] = ..., case_number: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class CountRowsResponse(_message.Message):
    __slots__ = ("rows", "audit_index")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    rows: int
    audit_index: int
    def __init__(self, rows: _Optional[int] = ..., audit_index: _Optional[int] = ...) -> None: ...

class DiscloseRequest(_message.Message):
    __slots__ = ("dataset", "fields", "filter", "purpose", "case_number", "limit")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CASE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    fields: _containers.RepeatedScalarFieldContainer[str]
    filter: str
    purpose: str
    case_number: str
    limit: int
    def __init__(self, dataset: _Optional[str] = ..., fields: _Optional[_Iterable[str]] = ..., filter: _Optional[str] = ..., purpose: _Optional[str] = ..., case_number: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class DisclosedField(_message.Message):
    __slots__ = ("name", "level", "form")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    FORM_FIELD_NUMBER: _ClassVar[int]
    name: str
    level: str
    form: str
    def __init__(self, name: _Optional[str] = ..., level: _Optional[str] = ..., form: _Optional[str] = ...) -> None: ...

class DiscloseResponse(_message.Message):
    __slots__ = ("fields", "rows", "matched_rows", "audit_index")
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    MATCHED_ROWS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[DisclosedField]
    rows: _containers.RepeatedCompositeFieldContainer[_common_pb2.DisclosedRow]
    matched_rows: int
    audit_index: int
    def __init__(self, fields: _Optional[_Iterable[_Union[DisclosedField, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[_common_pb2.DisclosedRow, _Mapping]]] = ..., matched_rows: _Optional[int] = ..., audit_index: _Optional[int] = ...) -> None: ...
