import datetime

from . import common_pb2 as _common_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterDatasetsRequest(_message.Message):
    __slots__ = ("department", "display_name", "adapter_endpoint", "datasets", "matching_key", "department_rules")
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    MATCHING_KEY_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_RULES_FIELD_NUMBER: _ClassVar[int]
    department: str
    display_name: str
    adapter_endpoint: str
    datasets: _containers.RepeatedCompositeFieldContainer[_common_pb2.DatasetSpec]
    matching_key: _common_pb2.MatchingKey
    department_rules: str
    def __init__(self, department: _Optional[str] = ..., display_name: _Optional[str] = ..., adapter_endpoint: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[_common_pb2.DatasetSpec, _Mapping]]] = ..., matching_key: _Optional[_Union[_common_pb2.MatchingKey, _Mapping]] = ..., department_rules: _Optional[str] = ...) -> None: ...

class RegisterDatasetsResponse(_message.Message):
    __slots__ = ("registered", "removed")
    REGISTERED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    registered: int
    removed: int
    def __init__(self, registered: _Optional[int] = ..., removed: _Optional[int] = ...) -> None: ...

class DatasetCount(_message.Message):
    __slots__ = ("name", "row_count")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    name: str
    row_count: int
    def __init__(self, name: _Optional[str] = ..., row_count: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("department", "adapter_endpoint", "counts")
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    ADAPTER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    department: str
    adapter_endpoint: str
    counts: _containers.RepeatedCompositeFieldContainer[DatasetCount]
    def __init__(self, department: _Optional[str] = ..., adapter_endpoint: _Optional[str] = ..., counts: _Optional[_Iterable[_Union[DatasetCount, _Mapping]]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("registration", "registered_endpoint")
    class Registration(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        REGISTRATION_UNSPECIFIED: _ClassVar[HeartbeatResponse.Registration]
        CURRENT: _ClassVar[HeartbeatResponse.Registration]
        UNKNOWN: _ClassVar[HeartbeatResponse.Registration]
        REPLACED: _ClassVar[HeartbeatResponse.Registration]
    REGISTRATION_UNSPECIFIED: HeartbeatResponse.Registration
    CURRENT: HeartbeatResponse.Registration
    UNKNOWN: HeartbeatResponse.Registration
    REPLACED: HeartbeatResponse.Registration
    REGISTRATION_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    registration: HeartbeatResponse.Registration
    registered_endpoint: str
    def __init__(self, registration: _Optional[_Union[HeartbeatResponse.Registration, str]] = ..., registered_endpoint: _Optional[str] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("department",)
    DEPARTMENT_FIELD_NUMBER: _ClassVar[int]
    department: str
    def __init__(self, department: _Optional[str] = ...) -> None: ...

class RegisteredDataset(_message.Message):
    __slots__ = ("spec", "department_display_name", "registered_at", "liveness", "last_contact", "live_row_count", "counted_at")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DEPARTMENT_DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    LIVENESS_FIELD_NUMBER: _ClassVar[int]
    LAST_CONTACT_FIELD_NUMBER: _ClassVar[int]
    LIVE_ROW_COUNT_FIELD_NUMBER: _ClassVar[int]
    COUNTED_AT_FIELD_NUMBER: _ClassVar[int]
    spec: _common_pb2.DatasetSpec
    department_display_name: str
    registered_at: _timestamp_pb2.Timestamp
    liveness: str
    last_contact: _timestamp_pb2.Timestamp
    live_row_count: int
    counted_at: _timestamp_pb2.Timestamp
    def __init__(self, spec: _Optional[_Union[_common_pb2.DatasetSpec, _Mapping]] = ..., department_display_name: _Optional[str] = ..., registered_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., liveness: _Optional[str] = ..., last_contact: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., live_row_count: _Optional[int] = ..., counted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[RegisteredDataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[RegisteredDataset, _Mapping]]] = ...) -> None: ...
