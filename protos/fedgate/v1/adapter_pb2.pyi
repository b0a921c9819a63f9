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
