from . import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("department", "datasets")
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    department: str
    datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetSpec]
    def __init__(self, department: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[_common_pb2.DatasetSpec, _Mapping]]] = ...) -> None: ...

class GetLogStateRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LogState(_message.Message):
    __slots__ = ("seen_size",)
    SEEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    seen_size: int
    def __init__(self, seen_size: _Optional[int] = ...) -> None: ...

class QueryTicket(_message.Message):
    __slots__ = ("claims", "entry", "checkpoint", "inclusion", "base_size", "consistency", "approvals")
    CLAIMS_FIELD_NUMBER: _ClassVar[int]
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    INCLUSION_FIELD_NUMBER: _ClassVar[int]
    BASE_SIZE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    claims: str
    entry: bytes
    checkpoint: str
    inclusion: _containers.RepeatedScalarFieldContainer[bytes]
    base_size: int
    consistency: _containers.RepeatedScalarFieldContainer[bytes]
    approvals: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, claims: _Optional[str] = ..., entry: _Optional[bytes] = ..., checkpoint: _Optional[str] = ..., inclusion: _Optional[_Iterable[bytes]] = ..., base_size: _Optional[int] = ..., consistency: _Optional[_Iterable[bytes]] = ..., approvals: _Optional[_Iterable[str]] = ...) -> None: ...

class AdapterCountRequest(_message.Message):
    __slots__ = ("ticket", "dataset", "filter", "filter_nonce", "min_set_size")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FILTER_NONCE_FIELD_NUMBER: _ClassVar[int]
    MIN_SET_SIZE_FIELD_NUMBER: _ClassVar[int]
    ticket: QueryTicket
    dataset: str
    filter: str
    filter_nonce: bytes
    min_set_size: int
    def __init__(self, ticket: _Optional[_Union[QueryTicket, _Mapping]] = ..., dataset: _Optional[str] = ..., filter: _Optional[str] = ..., filter_nonce: _Optional[bytes] = ..., min_set_size: _Optional[int] = ...) -> None: ...

class AdapterCountResponse(_message.Message):
    __slots__ = ("rows", "total_rows")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    total_rows: int
    def __init__(self, rows: _Optional[int] = ..., total_rows: _Optional[int] = ...) -> None: ...

class FieldRequest(_message.Message):
    __slots__ = ("name", "level", "form")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    FORM_FIELD_NUMBER: _ClassVar[int]
    name: str
    level: str
    form: str
    def __init__(self, name: _Optional[str] = ..., level: _Optional[str] = ..., form: _Optional[str] = ...) -> None: ...

class AdapterDiscloseRequest(_message.Message):
    __slots__ = ("ticket", "dataset", "fields", "filter", "filter_nonce", "min_set_size", "limit")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FILTER_NONCE_FIELD_NUMBER: _ClassVar[int]
    MIN_SET_SIZE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ticket: QueryTicket
    dataset: str
    fields: _containers.RepeatedCompositeFieldContainer[FieldRequest]
    filter: str
    filter_nonce: bytes
    min_set_size: int
    limit: int
    def __init__(self, ticket: _Optional[_Union[QueryTicket, _Mapping]] = ..., dataset: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[FieldRequest, _Mapping]]] = ..., filter: _Optional[str] = ..., filter_nonce: _Optional[bytes] = ..., min_set_size: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class AdapterDiscloseResponse(_message.Message):
    __slots__ = ("rows", "matched_rows")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    MATCHED_ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[_common_pb2.DisclosedRow]
    matched_rows: int
    def __init__(self, rows: _Optional[_Iterable[_Union[_common_pb2.DisclosedRow, _Mapping]]] = ..., matched_rows: _Optional[int] = ...) -> None: ...

class MatchStart(_message.Message):
    __slots__ = ("ticket", "dataset", "key_field", "filter", "filter_nonce", "mode", "role", "peer_key", "peer_department", "sealed_key", "min_set_size", "disclose_fields", "limit", "action", "value_fields", "paillier_key", "paillier_key_signature", "supervisor_certificate", "peer_filter", "peer_filter_nonce", "progress_reports")
    TICKET_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    FILTER_NONCE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    PEER_KEY_FIELD_NUMBER: _ClassVar[int]
    PEER_DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    SEALED_KEY_FIELD_NUMBER: _ClassVar[int]
    MIN_SET_SIZE_FIELD_NUMBER: _ClassVar[int]
    DISCLOSE_FIELDS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELDS_FIELD_NUMBER: _ClassVar[int]
    PAILLIER_KEY_FIELD_NUMBER: _ClassVar[int]
    PAILLIER_KEY_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SUPERVISOR_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    PEER_FILTER_FIELD_NUMBER: _ClassVar[int]
    PEER_FILTER_NONCE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_REPORTS_FIELD_NUMBER: _ClassVar[int]
    ticket: QueryTicket
    dataset: str
    key_field: str
    filter: str
    filter_nonce: bytes
    mode: str
    role: str
    peer_key: _common_pb2.MatchingKey
    peer_department: str
    sealed_key: bytes
    min_set_size: int
    disclose_fields: _containers.RepeatedCompositeFieldContainer[FieldRequest]
    limit: int
    action: str
    value_fields: _containers.RepeatedScalarFieldContainer[str]
    paillier_key: bytes
    paillier_key_signature: bytes
    supervisor_certificate: str
    peer_filter: str
    peer_filter_nonce: bytes
    progress_reports: bool
    def __init__(self, ticket: _Optional[_Union[QueryTicket, _Mapping]] = ..., dataset: _Optional[str] = ..., key_field: _Optional[str] = ..., filter: _Optional[str] = ..., filter_nonce: _Optional[bytes] = ..., mode: _Optional[str] = ..., role: _Optional[str] = ..., peer_key: _Optional[_Union[_common_pb2.MatchingKey, _Mapping]] = ..., peer_department: _Optional[str] = ..., sealed_key: _Optional[bytes] = ..., min_set_size: _Optional[int] = ..., disclose_fields: _Optional[_Iterable[_Union[FieldRequest, _Mapping]]] = ..., limit: _Optional[int] = ..., action: _Optional[str] = ..., value_fields: _Optional[_Iterable[str]] = ..., paillier_key: _Optional[bytes] = ..., paillier_key_signature: _Optional[bytes] = ..., supervisor_certificate: _Optional[str] = ..., peer_filter: _Optional[str] = ..., peer_filter_nonce: _Optional[bytes] = ..., progress_reports: _Optional[bool] = ...) -> None: ...

class MatchStarted(_message.Message):
    __slots__ = ("sealed_key", "cosignature")
    SEALED_KEY_FIELD_NUMBER: _ClassVar[int]
    COSIGNATURE_FIELD_NUMBER: _ClassVar[int]
    sealed_key: bytes
    cosignature: str
    def __init__(self, sealed_key: _Optional[bytes] = ..., cosignature: _Optional[str] = ...) -> None: ...

class TokenData(_message.Message):
    __slots__ = ("data",)
    DATA_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    def __init__(self, data: _Optional[bytes] = ...) -> None: ...

class SideDone(_message.Message):
    __slots__ = ("rows", "invalid_identifiers", "tokens", "missing_values", "total_rows", "total_noise")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    INVALID_IDENTIFIERS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    MISSING_VALUES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_NOISE_FIELD_NUMBER: _ClassVar[int]
    rows: int
    invalid_identifiers: int
    tokens: int
    missing_values: int
    total_rows: int
    total_noise: bytes
    def __init__(self, rows: _Optional[int] = ..., invalid_identifiers: _Optional[int] = ..., tokens: _Optional[int] = ..., missing_values: _Optional[int] = ..., total_rows: _Optional[int] = ..., total_noise: _Optional[bytes] = ...) -> None: ...

class CipherData(_message.Message):
    __slots__ = ("data", "rows")
    DATA_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    rows: int
    def __init__(self, data: _Optional[bytes] = ..., rows: _Optional[int] = ...) -> None: ...

class DiscloseMatched(_message.Message):
    __slots__ = ("positions",)
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, positions: _Optional[_Iterable[int]] = ...) -> None: ...

class DisclosedRows(_message.Message):
    __slots__ = ("rows",)
    ROWS_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[_common_pb2.DisclosedRow]
    def __init__(self, rows: _Optional[_Iterable[_Union[_common_pb2.DisclosedRow, _Mapping]]] = ...) -> None: ...

class MatchIn(_message.Message):
    __slots__ = ("start", "peer_tokens", "peer_done", "disclose")
    START_FIELD_NUMBER: _ClassVar[int]
    PEER_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PEER_DONE_FIELD_NUMBER: _ClassVar[int]
    DISCLOSE_FIELD_NUMBER: _ClassVar[int]
    start: MatchStart
    peer_tokens: TokenData
    peer_done: SideDone
    disclose: DiscloseMatched
    def __init__(self, start: _Optional[_Union[MatchStart, _Mapping]] = ..., peer_tokens: _Optional[_Union[TokenData, _Mapping]] = ..., peer_done: _Optional[_Union[SideDone, _Mapping]] = ..., disclose: _Optional[_Union[DiscloseMatched, _Mapping]] = ...) -> None: ...

class MatchOut(_message.Message):
    __slots__ = ("started", "own_tokens", "own_done", "reblinded", "reblind_done", "rows", "own_values", "progress")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    OWN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OWN_DONE_FIELD_NUMBER: _ClassVar[int]
    REBLINDED_FIELD_NUMBER: _ClassVar[int]
    REBLIND_DONE_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    OWN_VALUES_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    started: MatchStarted
    own_tokens: TokenData
    own_done: SideDone
    reblinded: TokenData
    reblind_done: SideDone
    rows: DisclosedRows
    own_values: CipherData
    progress: SideProgress
    def __init__(self, started: _Optional[_Union[MatchStarted, _Mapping]] = ..., own_tokens: _Optional[_Union[TokenData, _Mapping]] = ..., own_done: _Optional[_Union[SideDone, _Mapping]] = ..., reblinded: _Optional[_Union[TokenData, _Mapping]] = ..., reblind_done: _Optional[_Union[SideDone, _Mapping]] = ..., rows: _Optional[_Union[DisclosedRows, _Mapping]] = ..., own_values: _Optional[_Union[CipherData, _Mapping]] = ..., progress: _Optional[_Union[SideProgress, _Mapping]] = ...) -> None: ...

class SideProgress(_message.Message):
    __slots__ = ("rows_read", "rows_blinded")
    ROWS_READ_FIELD_NUMBER: _ClassVar[int]
    ROWS_BLINDED_FIELD_NUMBER: _ClassVar[int]
    rows_read: int
    rows_blinded: int
    def __init__(self, rows_read: _Optional[int] = ..., rows_blinded: _Optional[int] = ...) -> None: ...
