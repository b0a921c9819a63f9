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
    __slots__ = ("rows", "audit_index", "fewer_than", "epsilon")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    FEWER_THAN_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    rows: int
    audit_index: int
    fewer_than: int
    epsilon: float
    def __init__(self, rows: _Optional[int] = ..., audit_index: _Optional[int] = ..., fewer_than: _Optional[int] = ..., epsilon: _Optional[float] = ...) -> None: ...

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

class RowLimit(_message.Message):
    __slots__ = ("available", "returned", "requested", "applied", "limited_by")
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    RETURNED_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    LIMITED_BY_FIELD_NUMBER: _ClassVar[int]
    available: int
    returned: int
    requested: int
    applied: int
    limited_by: str
    def __init__(self, available: _Optional[int] = ..., returned: _Optional[int] = ..., requested: _Optional[int] = ..., applied: _Optional[int] = ..., limited_by: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("fields", "rows", "matched_rows", "audit_index", "row_limit")
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    MATCHED_ROWS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    ROW_LIMIT_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[DisclosedField]
    rows: _containers.RepeatedCompositeFieldContainer[_common_pb2.DisclosedRow]
    matched_rows: int
    audit_index: int
    row_limit: RowLimit
    def __init__(self, fields: _Optional[_Iterable[_Union[DisclosedField, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[_common_pb2.DisclosedRow, _Mapping]]] = ..., matched_rows: _Optional[int] = ..., audit_index: _Optional[int] = ..., row_limit: _Optional[_Union[RowLimit, _Mapping]] = ...) -> None: ...

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
    __slots__ = ("phase", "department", "tokens", "stage", "rows_blinded", "tokens_reblinded", "dataset_rows", "filtered", "withheld")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    ROWS_BLINDED_FIELD_NUMBER: _ClassVar[int]
    TOKENS_REBLINDED_FIELD_NUMBER: _ClassVar[int]
    DATASET_ROWS_FIELD_NUMBER: _ClassVar[int]
    FILTERED_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
    phase: str
    department: str
    tokens: int
    stage: str
    rows_blinded: int
    tokens_reblinded: int
    dataset_rows: int
    filtered: bool
    withheld: bool
    def __init__(self, phase: _Optional[str] = ..., department: _Optional[str] = ..., tokens: _Optional[int] = ..., stage: _Optional[str] = ..., rows_blinded: _Optional[int] = ..., tokens_reblinded: _Optional[int] = ..., dataset_rows: _Optional[int] = ..., filtered: _Optional[bool] = ..., withheld: _Optional[bool] = ...) -> None: ...

class MatchSideStats(_message.Message):
    __slots__ = ("dataset", "rows", "invalid_identifiers", "tokens", "missing_values")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    INVALID_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    MISSING_VALUES_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    rows: int
    invalid_identifiers: int
    tokens: int
    missing_values: int
    def __init__(self, dataset: _Optional[str] = ..., rows: _Optional[int] = ..., invalid_identifiers: _Optional[int] = ..., tokens: _Optional[int] = ..., missing_values: _Optional[int] = ...) -> None: ...

class MatchResult(_message.Message):
    __slots__ = ("left", "right", "cardinality", "distinct_matches", "fields", "rows", "audit_index", "row_limit", "fewer_than", "epsilon")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    CARDINALITY_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_MATCHES_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    ROW_LIMIT_FIELD_NUMBER: _ClassVar[int]
    FEWER_THAN_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    left: MatchSideStats
    right: MatchSideStats
    cardinality: int
    distinct_matches: int
    fields: _containers.RepeatedCompositeFieldContainer[DisclosedField]
    rows: _containers.RepeatedCompositeFieldContainer[_common_pb2.DisclosedRow]
    audit_index: int
    row_limit: RowLimit
    fewer_than: int
    epsilon: float
    def __init__(self, left: _Optional[_Union[MatchSideStats, _Mapping]] = ..., right: _Optional[_Union[MatchSideStats, _Mapping]] = ..., cardinality: _Optional[int] = ..., distinct_matches: _Optional[int] = ..., fields: _Optional[_Iterable[_Union[DisclosedField, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[_common_pb2.DisclosedRow, _Mapping]]] = ..., audit_index: _Optional[int] = ..., row_limit: _Optional[_Union[RowLimit, _Mapping]] = ..., fewer_than: _Optional[int] = ..., epsilon: _Optional[float] = ...) -> None: ...

class MatchEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: MatchProgress
    result: MatchResult
    def __init__(self, progress: _Optional[_Union[MatchProgress, _Mapping]] = ..., result: _Optional[_Union[MatchResult, _Mapping]] = ...) -> None: ...

class SumRequest(_message.Message):
    __slots__ = ("values", "value_fields", "other", "mode", "paillier_key", "purpose", "case_number", "paillier_key_signature", "supervisor_certificate")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELDS_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PAILLIER_KEY_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CASE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PAILLIER_KEY_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SUPERVISOR_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    values: MatchSide
    value_fields: _containers.RepeatedScalarFieldContainer[str]
    other: MatchSide
    mode: str
    paillier_key: bytes
    purpose: str
    case_number: str
    paillier_key_signature: bytes
    supervisor_certificate: str
    def __init__(self, values: _Optional[_Union[MatchSide, _Mapping]] = ..., value_fields: _Optional[_Iterable[str]] = ..., other: _Optional[_Union[MatchSide, _Mapping]] = ..., mode: _Optional[str] = ..., paillier_key: _Optional[bytes] = ..., purpose: _Optional[str] = ..., case_number: _Optional[str] = ..., paillier_key_signature: _Optional[bytes] = ..., supervisor_certificate: _Optional[str] = ...) -> None: ...

class EncryptedTotal(_message.Message):
    __slots__ = ("field", "ciphertext", "sensitivity")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    SENSITIVITY_FIELD_NUMBER: _ClassVar[int]
    field: str
    ciphertext: bytes
    sensitivity: int
    def __init__(self, field: _Optional[str] = ..., ciphertext: _Optional[bytes] = ..., sensitivity: _Optional[int] = ...) -> None: ...

class SumResult(_message.Message):
    __slots__ = ("values", "other", "cardinality", "distinct_matches", "totals", "audit_index", "fewer_than", "epsilon")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    CARDINALITY_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_MATCHES_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    FEWER_THAN_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    values: MatchSideStats
    other: MatchSideStats
    cardinality: int
    distinct_matches: int
    totals: _containers.RepeatedCompositeFieldContainer[EncryptedTotal]
    audit_index: int
    fewer_than: int
    epsilon: float
    def __init__(self, values: _Optional[_Union[MatchSideStats, _Mapping]] = ..., other: _Optional[_Union[MatchSideStats, _Mapping]] = ..., cardinality: _Optional[int] = ..., distinct_matches: _Optional[int] = ..., totals: _Optional[_Iterable[_Union[EncryptedTotal, _Mapping]]] = ..., audit_index: _Optional[int] = ..., fewer_than: _Optional[int] = ..., epsilon: _Optional[float] = ...) -> None: ...

class SumEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: MatchProgress
    result: SumResult
    def __init__(self, progress: _Optional[_Union[MatchProgress, _Mapping]] = ..., result: _Optional[_Union[SumResult, _Mapping]] = ...) -> None: ...

class CompareRequest(_message.Message):
    __slots__ = ("left", "left_value", "left_weight", "right", "right_value", "right_weight", "mode", "paillier_key", "disclose_fields", "limit", "purpose", "case_number", "paillier_key_signature", "supervisor_certificate")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    LEFT_VALUE_FIELD_NUMBER: _ClassVar[int]
    LEFT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_VALUE_FIELD_NUMBER: _ClassVar[int]
    RIGHT_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PAILLIER_KEY_FIELD_NUMBER: _ClassVar[int]
    DISCLOSE_FIELDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CASE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    PAILLIER_KEY_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SUPERVISOR_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    left: MatchSide
    left_value: str
    left_weight: int
    right: MatchSide
    right_value: str
    right_weight: int
    mode: str
    paillier_key: bytes
    disclose_fields: _containers.RepeatedScalarFieldContainer[str]
    limit: int
    purpose: str
    case_number: str
    paillier_key_signature: bytes
    supervisor_certificate: str
    def __init__(self, left: _Optional[_Union[MatchSide, _Mapping]] = ..., left_value: _Optional[str] = ..., left_weight: _Optional[int] = ..., right: _Optional[_Union[MatchSide, _Mapping]] = ..., right_value: _Optional[str] = ..., right_weight: _Optional[int] = ..., mode: _Optional[str] = ..., paillier_key: _Optional[bytes] = ..., disclose_fields: _Optional[_Iterable[str]] = ..., limit: _Optional[int] = ..., purpose: _Optional[str] = ..., case_number: _Optional[str] = ..., paillier_key_signature: _Optional[bytes] = ..., supervisor_certificate: _Optional[str] = ...) -> None: ...

class FlaggedPairs(_message.Message):
    __slots__ = ("pairs",)
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    pairs: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, pairs: _Optional[_Iterable[int]] = ...) -> None: ...

class CompareIn(_message.Message):
    __slots__ = ("request", "flagged")
    REQUEST_FIELD_NUMBER: _ClassVar[int]
    FLAGGED_FIELD_NUMBER: _ClassVar[int]
    request: CompareRequest
    flagged: FlaggedPairs
    def __init__(self, request: _Optional[_Union[CompareRequest, _Mapping]] = ..., flagged: _Optional[_Union[FlaggedPairs, _Mapping]] = ...) -> None: ...

class PackedFlags(_message.Message):
    __slots__ = ("ciphertexts",)
    CIPHERTEXTS_FIELD_NUMBER: _ClassVar[int]
    ciphertexts: bytes
    def __init__(self, ciphertexts: _Optional[bytes] = ...) -> None: ...

class CompareResult(_message.Message):
    __slots__ = ("left", "right", "pairs", "slot_bits", "slots", "offset_bits", "audit_index")
    LEFT_FIELD_NUMBER: _ClassVar[int]
    RIGHT_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    SLOT_BITS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_BITS_FIELD_NUMBER: _ClassVar[int]
    AUDIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    left: MatchSideStats
    right: MatchSideStats
    pairs: int
    slot_bits: int
    slots: int
    offset_bits: int
    audit_index: int
    def __init__(self, left: _Optional[_Union[MatchSideStats, _Mapping]] = ..., right: _Optional[_Union[MatchSideStats, _Mapping]] = ..., pairs: _Optional[int] = ..., slot_bits: _Optional[int] = ..., slots: _Optional[int] = ..., offset_bits: _Optional[int] = ..., audit_index: _Optional[int] = ...) -> None: ...

class CompareRows(_message.Message):
    __slots__ = ("fields", "rows", "row_limit")
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ROW_LIMIT_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[DisclosedField]
    rows: _containers.RepeatedCompositeFieldContainer[_common_pb2.DisclosedRow]
    row_limit: RowLimit
    def __init__(self, fields: _Optional[_Iterable[_Union[DisclosedField, _Mapping]]] = ..., rows: _Optional[_Iterable[_Union[_common_pb2.DisclosedRow, _Mapping]]] = ..., row_limit: _Optional[_Union[RowLimit, _Mapping]] = ...) -> None: ...

class CompareEvent(_message.Message):
    __slots__ = ("progress", "flags", "result", "rows")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    progress: MatchProgress
    flags: PackedFlags
    result: CompareResult
    rows: CompareRows
    def __init__(self, progress: _Optional[_Union[MatchProgress, _Mapping]] = ..., flags: _Optional[_Union[PackedFlags, _Mapping]] = ..., result: _Optional[_Union[CompareResult, _Mapping]] = ..., rows: _Optional[_Union[CompareRows, _Mapping]] = ...) -> None: ...
