"""Plugin registry: discovers plugins with pluggy and creates components by name.

The registry is built lazily on first use, so ``import mixkit`` stays cheap and a
broken third-party plugin never breaks it: plugins whose import fails are kept
in :func:`plugins` with their error and shown by ``mixkit list``.
"""

from __future__ import annotations

import difflib
import importlib.metadata as metadata
import threading
from dataclasses import dataclass
from typing import Any

import pluggy

from mixkit import hookspecs

ENTRY_POINT_GROUP = "mixkit"
KINDS = {"mixer": "mixkit_mixers", "density": "mixkit_densities"}


class UnknownComponentError(LookupError):
    """Raised for a mixer or density name that no plugin registers."""

    def __str__(self) -> str:  # LookupError would print the repr of the message
        return str(self.args[0])


class PluginCollisionError(RuntimeError):
    """Raised when two plugins register the same name for the same kind."""


@dataclass(frozen=True)
class Component:
    """One registered mixer or density."""

    kind: str
    name: str
    cls: type
    description: str
    plugin: str


@dataclass(frozen=True)
class PluginInfo:
    """A plugin known to mixkit; ``error`` is set when it failed to load."""

    name: str
    source: str  # "built-in", "entry point <dist> <version>", or "runtime"
    error: str | None = None


def _describe(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0].strip() if doc else "(no description)"


class Registry:
    """Holds a pluggy PluginManager and the components its plugins contribute."""

    def __init__(self, *, load_entry_points: bool = True) -> None:
        self._lock = threading.RLock()
        self._pm = pluggy.PluginManager("mixkit")
        self._pm.add_hookspecs(hookspecs)
        self._plugins: dict[str, PluginInfo] = {}
        self._components: dict[str, dict[str, Component]] | None = None
        self._load_entry_points = load_entry_points
        self._entry_points_loaded = False

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        self._ensure_loaded()
        return self._pm

    def _ensure_loaded(self) -> None:
        with self._lock:
            if self._entry_points_loaded:
                return
            self._entry_points_loaded = True
            from mixkit import builtin_plugin

            self._register(builtin_plugin, "mixkit", "built-in")
            if self._load_entry_points:
                self._load_from_entry_points()

    def _load_from_entry_points(self) -> None:
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            source = f"entry point {ep.value}"
            if dist is not None:
                source += f" ({dist.metadata['Name']} {dist.version})"
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not break mixkit
                self._plugins[ep.name] = PluginInfo(ep.name, source, f"{type(exc).__name__}: {exc}")
                continue
            if self._pm.is_registered(plugin) or self._pm.has_plugin(ep.name):
                continue  # the same distribution seen twice on sys.path
            self._register(plugin, ep.name, source)

    def _register(self, plugin: Any, name: str, source: str) -> None:
        self._pm.register(plugin, name=name)
        self._plugins[name] = PluginInfo(name, source)
        self._components = None

    def register(self, plugin: Any, name: str | None = None) -> str:
        """Register a plugin object (module, class or instance) at run time; returns its name."""
        with self._lock:
            self._ensure_loaded()
            name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
            if self._pm.has_plugin(name):
                raise ValueError(f"a plugin named {name!r} is already registered; pass another name=")
            self._register(plugin, name, "runtime")
            return name

    def unregister(self, name: str) -> None:
        """Remove a plugin registered under ``name``."""
        with self._lock:
            self._ensure_loaded()
            if not self._pm.has_plugin(name):
                raise UnknownComponentError(f"no plugin named {name!r} is registered")
            self._pm.unregister(name=name)
            self._plugins.pop(name, None)
            self._components = None

    def plugins(self) -> list[PluginInfo]:
        self._ensure_loaded()
        return sorted(self._plugins.values(), key=lambda p: (p.name != "mixkit", p.name))

    def components(self) -> dict[str, dict[str, Component]]:
        with self._lock:
            self._ensure_loaded()
            if self._components is None:
                self._components = {kind: self._collect(kind, hook) for kind, hook in KINDS.items()}
            return self._components

    def _collect(self, kind: str, hook_name: str) -> dict[str, Component]:
        found: dict[str, Component] = {}
        for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
            contributed = impl.function() or {}
            for name, cls in contributed.items():
                if name in found:
                    raise PluginCollisionError(
                        f"{kind} {name!r} is registered by both plugin {found[name].plugin!r} "
                        f"and plugin {impl.plugin_name!r}; uninstall or unregister one of them"
                    )
                found[name] = Component(kind, name, cls, _describe(cls), impl.plugin_name)
        return dict(sorted(found.items()))

    def get(self, kind: str, name: str) -> Component:
        table = self.components()[kind]
        if name in table:
            return table[name]
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        plural = "densities" if kind == "density" else f"{kind}s"
        raise UnknownComponentError(
            f"unknown {kind} {name!r}.{hint} Available {plural}: {', '.join(table) or '(none)'}. "
            "Run `mixkit list` to see plugins and those that failed to load."
        )

    def create(self, kind: str, name: str, /, **kwargs: Any) -> Any:
        return self.get(kind, name).cls(**kwargs)


_registry = Registry()


def get_registry() -> Registry:
    """The process-wide registry used by :func:`create_mixer` and friends."""
    return _registry


def available(kind: str | None = None) -> dict:
    """What is registered: ``{"mixer": {name: Component}, "density": {...}}``.

    With ``kind`` ("mixer" or "density"), only that table. Each
    :class:`Component` carries the class, its one-line description and the
    plugin it came from.
    """
    table = _registry.components()
    if kind is None:
        return dict(table)
    if kind not in table:
        raise ValueError(f"kind must be one of {sorted(table)}, got {kind!r}")
    return dict(table[kind])


def plugins() -> list[PluginInfo]:
    """Every plugin mixkit knows of, including those that failed to load."""
    return _registry.plugins()


def create_mixer(name: str, /, **kwargs: Any) -> Any:
    """Instantiate the mixer registered as ``name`` with ``kwargs``."""
    return _registry.create("mixer", name, **kwargs)


def create_density(name: str, /, **kwargs: Any) -> Any:
    """Instantiate the density registered as ``name`` with ``kwargs``."""
    return _registry.create("density", name, **kwargs)


def resolve(kind: str, spec: Any, base: type | None = None, /, **kwargs: Any) -> Any:
    """A component from a registered name (built with ``kwargs``) or an instance (returned as is).

    The one place that turns "a name or an instance" arguments into objects: a name is
    looked up in the registry; an instance is checked against ``base`` when given, and
    ``kwargs`` are refused for it (they would be silently ignored).
    """
    if isinstance(spec, str):
        return _registry.create(kind, spec, **kwargs)
    if kwargs:
        raise TypeError(
            f"{kind} keyword arguments ({', '.join(sorted(kwargs))}) are only accepted with a {kind} name; "
            f"configure the {type(spec).__name__} instance directly"
        )
    if base is not None and not isinstance(spec, base):
        raise TypeError(
            f"expected a registered {kind} name or a {base.__module__.split('.')[0]}.{base.__name__}, "
            f"got {type(spec).__name__} {spec!r}"
        )
    return spec


def register_plugin(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object at run time (tests, notebooks); returns the name it got."""
    return _registry.register(plugin, name)


def unregister_plugin(name: str) -> None:
    """Undo :func:`register_plugin`."""
    _registry.unregister(name)
