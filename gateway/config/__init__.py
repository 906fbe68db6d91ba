"""Configuration: typed settings, loaded from YAML, ``GAZEX_*`` variables and flags."""

from gateway.config.loading import ConfigError, load_settings
from gateway.config.settings import (
    AllowedCaller,
    DatabaseSettings,
    DicomSettings,
    Settings,
    StorageSettings,
    Timeouts,
    TLSSettings,
)

__all__ = [
    "AllowedCaller",
    "ConfigError",
    "DatabaseSettings",
    "DicomSettings",
    "Settings",
    "StorageSettings",
    "TLSSettings",
    "Timeouts",
    "load_settings",
]
