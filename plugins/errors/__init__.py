from plugins.errors.error_envelope import ErrorEnvelope, ErrorType, build_error_envelope
from plugins.errors.exceptions import (
    GovernedExecutionError,
    InputValidationError,
    OutputValidationError,
    PluginContractError,
    PluginExecutionError,
    PluginNotFoundError,
    PluginTimeoutError,
    PluginUnavailableError,
    UngovernedExecutionError,
)

__all__ = [
    "ErrorEnvelope",
    "ErrorType",
    "GovernedExecutionError",
    "InputValidationError",
    "OutputValidationError",
    "PluginContractError",
    "PluginExecutionError",
    "PluginNotFoundError",
    "PluginTimeoutError",
    "PluginUnavailableError",
    "UngovernedExecutionError",
    "build_error_envelope",
]
