from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OptionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OPTION_TYPE_UNSPECIFIED: _ClassVar[OptionType]
    CALL: _ClassVar[OptionType]
    PUT: _ClassVar[OptionType]
OPTION_TYPE_UNSPECIFIED: OptionType
CALL: OptionType
PUT: OptionType

class PriceOptionRequest(_message.Message):
    __slots__ = ("type", "spot", "strike", "tau", "rate", "volatility", "dividend_yield")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SPOT_FIELD_NUMBER: _ClassVar[int]
    STRIKE_FIELD_NUMBER: _ClassVar[int]
    TAU_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    VOLATILITY_FIELD_NUMBER: _ClassVar[int]
    DIVIDEND_YIELD_FIELD_NUMBER: _ClassVar[int]
    type: OptionType
    spot: float
    strike: float
    tau: float
    rate: float
    volatility: float
    dividend_yield: float
    def __init__(self, type: _Optional[_Union[OptionType, str]] = ..., spot: _Optional[float] = ..., strike: _Optional[float] = ..., tau: _Optional[float] = ..., rate: _Optional[float] = ..., volatility: _Optional[float] = ..., dividend_yield: _Optional[float] = ...) -> None: ...

class Greeks(_message.Message):
    __slots__ = ("delta", "gamma", "theta", "vega", "rho")
    DELTA_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    THETA_FIELD_NUMBER: _ClassVar[int]
    VEGA_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    delta: float
    gamma: float
    theta: float
    vega: float
    rho: float
    def __init__(self, delta: _Optional[float] = ..., gamma: _Optional[float] = ..., theta: _Optional[float] = ..., vega: _Optional[float] = ..., rho: _Optional[float] = ...) -> None: ...

class PriceOptionResponse(_message.Message):
    __slots__ = ("price", "greeks", "model_version", "cached")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    GREEKS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    price: float
    greeks: Greeks
    model_version: str
    cached: bool
    def __init__(self, price: _Optional[float] = ..., greeks: _Optional[_Union[Greeks, _Mapping]] = ..., model_version: _Optional[str] = ..., cached: _Optional[bool] = ...) -> None: ...

class PriceBatchRequest(_message.Message):
    __slots__ = ("type", "spot", "strike", "tau", "rate", "volatility", "dividend_yield")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SPOT_FIELD_NUMBER: _ClassVar[int]
    STRIKE_FIELD_NUMBER: _ClassVar[int]
    TAU_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    VOLATILITY_FIELD_NUMBER: _ClassVar[int]
    DIVIDEND_YIELD_FIELD_NUMBER: _ClassVar[int]
    type: _containers.RepeatedScalarFieldContainer[OptionType]
    spot: _containers.RepeatedScalarFieldContainer[float]
    strike: _containers.RepeatedScalarFieldContainer[float]
    tau: _containers.RepeatedScalarFieldContainer[float]
    rate: _containers.RepeatedScalarFieldContainer[float]
    volatility: _containers.RepeatedScalarFieldContainer[float]
    dividend_yield: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, type: _Optional[_Iterable[_Union[OptionType, str]]] = ..., spot: _Optional[_Iterable[float]] = ..., strike: _Optional[_Iterable[float]] = ..., tau: _Optional[_Iterable[float]] = ..., rate: _Optional[_Iterable[float]] = ..., volatility: _Optional[_Iterable[float]] = ..., dividend_yield: _Optional[_Iterable[float]] = ...) -> None: ...

class PriceBatchResponse(_message.Message):
    __slots__ = ("price", "delta", "gamma", "theta", "vega", "rho", "model_version", "cached_count")
    PRICE_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    THETA_FIELD_NUMBER: _ClassVar[int]
    VEGA_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CACHED_COUNT_FIELD_NUMBER: _ClassVar[int]
    price: _containers.RepeatedScalarFieldContainer[float]
    delta: _containers.RepeatedScalarFieldContainer[float]
    gamma: _containers.RepeatedScalarFieldContainer[float]
    theta: _containers.RepeatedScalarFieldContainer[float]
    vega: _containers.RepeatedScalarFieldContainer[float]
    rho: _containers.RepeatedScalarFieldContainer[float]
    model_version: str
    cached_count: int
    def __init__(self, price: _Optional[_Iterable[float]] = ..., delta: _Optional[_Iterable[float]] = ..., gamma: _Optional[_Iterable[float]] = ..., theta: _Optional[_Iterable[float]] = ..., vega: _Optional[_Iterable[float]] = ..., rho: _Optional[_Iterable[float]] = ..., model_version: _Optional[str] = ..., cached_count: _Optional[int] = ...) -> None: ...

class ForecastRequest(_message.Message):
    __slots__ = ("symbol", "closes")
    SYMBOL_FIELD_NUMBER: _ClassVar[int]
    CLOSES_FIELD_NUMBER: _ClassVar[int]
    symbol: str
    closes: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, symbol: _Optional[str] = ..., closes: _Optional[_Iterable[float]] = ...) -> None: ...

class ForecastResponse(_message.Message):
    __slots__ = ("horizons", "log_return", "volatility", "model_version")
    HORIZONS_FIELD_NUMBER: _ClassVar[int]
    LOG_RETURN_FIELD_NUMBER: _ClassVar[int]
    VOLATILITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    horizons: _containers.RepeatedScalarFieldContainer[int]
    log_return: _containers.RepeatedScalarFieldContainer[float]
    volatility: _containers.RepeatedScalarFieldContainer[float]
    model_version: str
    def __init__(self, horizons: _Optional[_Iterable[int]] = ..., log_return: _Optional[_Iterable[float]] = ..., volatility: _Optional[_Iterable[float]] = ..., model_version: _Optional[str] = ...) -> None: ...
