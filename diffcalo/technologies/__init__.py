"""Module technologies: the contract, the built-ins and the plugin registry."""

from diffcalo.technologies.base import Block, Technology, validate_cell_size
from diffcalo.technologies.registry import (
    ENTRY_POINT_GROUP,
    Registry,
    available,
    default_registry,
    get,
    register,
    technology_label,
)

__all__ = ["Block", "Technology", "validate_cell_size", "Registry", "ENTRY_POINT_GROUP",
           "available", "default_registry", "get", "register", "technology_label"]
