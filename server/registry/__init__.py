"""The ownership registry: who owns each name and IP, written into the zone store."""

from .ownership import Registry, RegistrySettings

__all__ = ["Registry", "RegistrySettings"]
