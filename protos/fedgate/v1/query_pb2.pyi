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

class MatchSide(_message.Message):
    __slots__ = ("dataset", "key_field", "filter")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    key_field: str
    filter: str
    def __init__(self, dataset: _Optional[str] = ..., key_field: _Optional[str] = ..., filter: _Optional[str] = ...) -> None: ...

class MatchRequest(_message.Message):
    __slots__ = ("left", "right", "mode", "disclose_fields", "limit", "purpose", "case_number")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    DISCLOSE_FIELDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CASE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    left: MatchSide
    right: MatchSide
    mode: str
    disclose_fields: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    purpose: str
    case_number: str
    def __init__(self, left: _Optional[_Union[MatchSide, _Mapping]] = ..., right: _Optional[_Union[MatchSide, _Mapping]] = ..., mode: _Optional[str] = ..., disclose_fields: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., purpose: _Optional[str] = ..., case_number: _Optional[str] = ...) -> None: ...

class MatchProgress(_message.Message):
    __slots__ = ("phase", "department", "tokens")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    phase: str
    department: str
    tokens: int
    def __init__(self, phase: _Optional[str] = ..., department: _Optional[str] = ..., tokens: _Optional[int] = ...) -> None: ...

class MatchSideStats(_message.Message):
    __slots__ = ("dataset", "rows", "invalid_identifiers", "tokens")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    INVALID_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    rows: int
    invalid_identifiers: int
    tokens: int
    def __init__(self, dataset: _Optional[str] = ..., rows: _Optional[int] = ..., invalid_identifiers: _Optional[int] = ..., tokens: _Optional[int] = ...) -> None: ...

class MatchResult(_message.Message):
    __slots__ = ("left", "right", "cardinality", "distinct_matches", "fields", "rows", "audit_index")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    CARDINALITY_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_MATCHES_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    left: MatchSideStats
    right: MatchSideStats
    cardinality: int
    distinct_matches: int
    fields: _containers.RepeatedCompositeFieldContainer[DisclosedField]
    rows: _containers.RepeatedCompositeFieldContainer[_common_pb2.DisclosedRow]
    audit_index: int
    def __init__(self, left: _Optional[_Union[MatchSideStats, _Mapping]] = ..., right: _Optional[_Union[MatchSideStats, _Mapping]] = ..., cardinality: _Optional[int] = ..., distinct_matches: _Optional[int] = ..., fields: _Optional[_Iterable[_Union[DisclosedField, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[_common_pb2.DisclosedRow, _Mapping]]] = ..., audit_index: _Optional[int] = ...) -> None: ...

class MatchEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: MatchProgress
    result: MatchResult
    def __init__(self, progress: _Optional[_Union[MatchProgress, _Mapping]] = ..., result: _Optional[_Union[MatchResult, _Mapping]] = ...) -> None: ...
