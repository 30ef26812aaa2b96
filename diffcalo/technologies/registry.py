"""Registry of module technologies: built-ins plus plugins from the ``diffcalo.technologies``
entry-point group.

Plugins are loaded lazily, once, on the first look-up: each entry point must resolve to a
:class:`~diffcalo.technologies.base.Technology` instance or to a zero-argument callable returning one.
A plugin that fails to import or to validate is skipped with a :class:`RuntimeWarning` (the others
still load); a plugin whose name is already registered is an error, as is registering a name twice.
The registry is an explicit object; the module-level functions act on the default one.
"""

from __future__ import annotations

import warnings
from importlib.metadata import entry_points

from diffcalo.technologies.base import Technology

__all__ = ["Registry", "ENTRY_POINT_GROUP", "register", "get", "available", "default_registry", "technology_label"]

ENTRY_POINT_GROUP = "diffcalo.technologies"


class Registry:
    """Name -> Technology, with lazy loading of entry-point plugins."""

    def __init__(self, group: str | None = ENTRY_POINT_GROUP):
        self._items: dict[str, Technology] = {}
        self._group = group
        self._plugins_loaded = group is None

    def register(self, technology: Technology, *, replace: bool = False) -> Technology:
        """Add a technology (validated). A second registration of a name is an error unless ``replace``."""
        if not isinstance(technology, Technology):
            raise TypeError(f"register: expected a Technology, got {type(technology).__name__}")
        technology.validate()
        if technology.name in self._items and not replace:
            raise ValueError(f"technology {technology.name!r} is already registered; "
                             "choose another name or pass replace=True")
        self._items[technology.name] = technology
        return technology

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self._group):
            try:
                obj = ep.load()
                tech = obj() if callable(obj) and not isinstance(obj, Technology) else obj
                if not isinstance(tech, Technology):
                    raise TypeError(f"resolves to {type(tech).__name__}, not a Technology")
                tech.validate()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the others down
                warnings.warn(f"diffcalo: technology plugin {ep.name!r} ({ep.value}) was skipped: {exc}",
                              RuntimeWarning, stacklevel=3)
                continue
            if tech.name in self._items:
                raise ValueError(f"technology plugin {ep.name!r} ({ep.value}) registers the name "
                                 f"{tech.name!r}, which is already registered")
            self._items[tech.name] = tech

    def get(self, name: str) -> Technology:
        """The technology called ``name``; the error lists the available ones."""
        self._load_plugins()
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown technology {name!r}; available: {', '.join(self.available())}") from None

    def available(self) -> list[str]:
        """Sorted names of all registered technologies (built-in and plugins)."""
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name in self._items


def _default() -> Registry:
    """The built-ins, each with its shipped Geant4 calibration (diffcalo/technologies/calibration/)."""
    import dataclasses

    from diffcalo.technologies import builtin
    from diffcalo.technologies.calibration import builtin_calibration

    reg = Registry()
    for tech in builtin.BUILTINS:
        cal = builtin_calibration(tech.name)
        reg.register(dataclasses.replace(tech, calibration=cal) if cal is not None else tech)
    return reg


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry holding the built-ins and installed plugins."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = _default()
    return _DEFAULT


def register(technology: Technology, *, replace: bool = False) -> Technology:
    """Register a technology in the default registry."""
    return default_registry().register(technology, replace=replace)


def get(name: str) -> Technology:
    """Look a technology up in the default registry."""
    return default_registry().get(name)


def available() -> list[str]:
    """Names of the technologies in the default registry."""
    return default_registry().available()


def technology_label(name: str) -> str:
    """A registered technology's display name (``Technology.display_name``: "spacal-pb" -> "SpaCal-Pb");
    an unknown name is returned as it is."""
    reg = default_registry()
    return reg.get(name).display_name if name in reg else name
