"""Plugin registry: loads plugins with pluggy and creates components by name.

Plugins come from two places, and both are registered the same way:

* :data:`DEFAULT_PLUGINS`, mixkit's own plugins, named by module (as llm's default
  plugins are) and imported with :mod:`importlib` on first use, so this module never
  imports the modules that import it back;
* third-party distributions that declare a module in the ``mixkit`` entry-point group.
  The ``MIXKIT_LOAD_PLUGINS`` environment variable selects them: unset loads all,
  ``""`` loads none, ``"a,b"`` loads only the plugins (entry-point or distribution
  names) ``a`` and ``b``. Default plugins always load.

The registry is built lazily on first use, so ``import mixkit`` stays cheap. A plugin
that fails in any way (its import raises or calls ``sys.exit()``, pluggy refuses its
hooks, a hook raises or returns something other than ``{str: class}``, or a name it
registers is already taken) is dropped alone: everything else keeps working, the
failure is listed by :func:`plugins` and ``mixkit list``, and the error of a call that
asks for one of its components quotes it.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import importlib.util
import os
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from mixkit import hookspecs

ENTRY_POINT_GROUP = "mixkit"
LOAD_PLUGINS_ENV = "MIXKIT_LOAD_PLUGINS"
KINDS = {"mixer": "mixkit_mixers", "density": "mixkit_densities"}
CORE_PLUGIN = "mixkit"

#: mixkit's own plugins, by module name, in load order. The first holds the core
#: mixers and densities; the others ship in the mixkit wheel from ``plugins/``.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "mixkit.builtin_plugin",
    "mixkit_plugins.flow",
    "mixkit_plugins.vae",
    "mixkit_plugins.gan",
)

#: the extra of mixkit's ``pyproject.toml`` a default plugin needs, and the top-level
#: modules that extra installs (checked with ``find_spec``, which imports nothing)
EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mixkit_plugins.flow": ("flow", ("normflows",)),
    "mixkit_plugins.vae": ("vae", ("pyro",)),
}

# what a plugin may fail with and still leave mixkit running; SystemExit included,
# since a plugin calling sys.exit() at import must not end the user's process
_PLUGIN_FAILURES = (Exception, SystemExit)


class UnknownComponentError(LookupError):
    """Raised for a mixer or density name that no loaded plugin registers."""

    def __str__(self) -> str:  # LookupError would print the repr of the message
        return str(self.args[0])


class PluginError(RuntimeError):
    """Raised by :func:`register_plugin` for a plugin that cannot be loaded."""


class PluginCollisionError(PluginError):
    """Raised by :func:`register_plugin` for a plugin registering a name that is taken."""


class MissingExtraError(ImportError):
    """Raised when a component needs an optional extra that is not installed."""


def _missing_modules(modules: Iterable[str]) -> tuple[str, ...]:
    missing = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken or blocked package counts as absent
            found = False
        if not found:
            missing.append(module)
    return tuple(missing)


@dataclass(frozen=True)
class Component:
    """One registered mixer or density.

    ``extra`` names the ``mixkit[...]`` extra the component needs (``None`` when it
    needs none); :attr:`missing` lists the modules of that extra not installed now.
    """

    kind: str
    name: str
    cls: type
    description: str
    plugin: str
    extra: str | None = None
    requires: tuple[str, ...] = ()

    @property
    def missing(self) -> tuple[str, ...]:
        return _missing_modules(self.requires)

    @property
    def install_hint(self) -> str | None:
        """``pip install 'mixkit[extra]'`` when the extra is missing, else ``None``."""
        return f"pip install 'mixkit[{self.extra}]'" if self.extra and self.missing else None


@dataclass(frozen=True)
class PluginInfo:
    """A plugin known to mixkit; ``error`` is set when it failed and was dropped."""

    name: str
    source: str  # "built-in (module)", "entry point <value> (<dist> <version>)", "runtime", ...
    error: str | None = None


def _describe(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    return doc.splitlines()[0].strip() if doc else "(no description)"


def _default_plugin_name(module: str) -> str:
    # the core plugin is "mixkit"; mixkit_plugins.flow is "flow", as it was as an entry point
    return CORE_PLUGIN if module.split(".")[0] == "mixkit" else module.rsplit(".", 1)[-1]


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # the packaging rule for distribution names


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}): the plugin called sys.exit()"
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"  # one line, for `mixkit list`


def parse_load_plugins(value: str | None) -> frozenset[str] | None:
    """``MIXKIT_LOAD_PLUGINS`` parsed: ``None`` (load all), or the set of names to load."""
    if value is None:
        return None
    return frozenset(part.strip() for part in value.split(",") if part.strip())


class Registry:
    """Holds a pluggy PluginManager and the components its plugins contribute.

    Args:
        load_plugins: which third-party (entry-point) plugins to load: ``None`` reads
            ``MIXKIT_LOAD_PLUGINS`` when the registry first loads; ``True`` all;
            ``False`` none; an iterable of entry-point or distribution names, those.
        default_plugins: module names of the plugins always loaded first.
    """

    def __init__(
        self,
        *,
        load_plugins: bool | Iterable[str] | None = None,
        default_plugins: Iterable[str] = DEFAULT_PLUGINS,
    ) -> None:
        if isinstance(load_plugins, str):
            raise TypeError("load_plugins takes True, False, None or a list of names, not a string")
        self._lock = threading.RLock()
        self._pm = pluggy.PluginManager("mixkit")
        self._pm.add_hookspecs(hookspecs)
        self._load_plugins = load_plugins
        self._default_plugins = tuple(default_plugins)
        self._order: list[str] = []  # registered plugins, in load order
        self._sources: dict[str, str] = {}
        self._extras: dict[str, tuple[str, tuple[str, ...]]] = {}
        self._load_errors: dict[str, PluginInfo] = {}  # plugins that never got registered
        self._hook_errors: dict[str, str] = {}  # registered plugins dropped when collecting
        self._collisions: set[str] = set()  # those of them dropped for a name already taken
        self._unavailable: dict[tuple[str, str], str] = {}  # (kind, name) -> why it is missing
        self._components: dict[str, dict[str, Component]] | None = None
        self._loaded = False

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        self._ensure_loaded()
        return self._pm

    # -- loading ---------------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            for module in self._default_plugins:
                self._load_default(module)
            self._load_entry_points()

    def _load_default(self, module: str) -> None:
        name = _default_plugin_name(module)
        source = f"built-in ({module})"
        extra = EXTRAS.get(module)
        try:
            plugin = importlib.import_module(module)
        except _PLUGIN_FAILURES as exc:
            error = _error_text(exc)
            if extra and _missing_modules(extra[1]):
                error += f"; it needs the {extra[0]!r} extra: pip install 'mixkit[{extra[0]}]'"
            self._load_errors[name] = PluginInfo(name, source, error)
            return
        error = self._register(plugin, name, source)
        if error is None and extra:
            self._extras[name] = extra
        elif error is not None:
            self._load_errors[name] = PluginInfo(name, source, error)

    def _selection(self) -> frozenset[str] | None:
        choice = self._load_plugins
        if choice is None:
            return parse_load_plugins(os.environ.get(LOAD_PLUGINS_ENV))
        if choice is True:
            return None
        if choice is False:
            return frozenset()
        return frozenset(choice)

    def _load_entry_points(self) -> None:
        selected = self._selection()
        if selected is not None and not selected:
            return
        wanted = {_normalize(n): n for n in selected} if selected is not None else None
        seen: set[str] = set()
        eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name, ep.value))
        for ep in eps:
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            if wanted is not None:
                keys = {_normalize(ep.name)} | ({_normalize(dist_name)} if dist_name else set())
                hit = keys & set(wanted)
                if not hit:
                    continue
                seen |= hit
            source = f"entry point {ep.value}"
            if dist is not None:
                source += f" ({dist_name} {dist.version})"
            try:
                plugin = ep.load()
            except _PLUGIN_FAILURES as exc:
                self._load_errors.setdefault(ep.name, PluginInfo(ep.name, source, _error_text(exc)))
                continue
            if self._pm.is_registered(plugin):
                continue  # a default plugin, or the same distribution seen twice on sys.path
            error = self._register(plugin, ep.name, source)
            if error is not None:
                self._load_errors.setdefault(ep.name, PluginInfo(ep.name, source, error))
        for key, name in (wanted or {}).items():
            if key not in seen and not self._pm.has_plugin(name):  # a default plugin always loads
                self._load_errors[name] = PluginInfo(
                    name,
                    f"{LOAD_PLUGINS_ENV}",
                    f"not installed: no distribution or entry point named {name!r} in the "
                    f"{ENTRY_POINT_GROUP!r} entry-point group",
                )

    def _register(self, plugin: Any, name: str, source: str) -> str | None:
        """Register ``plugin``; returns why it was refused, or ``None``."""
        if self._pm.has_plugin(name):
            return f"a plugin named {name!r} is already registered ({self._sources.get(name, 'loaded')})"
        try:
            self._pm.register(plugin, name=name)
        except _PLUGIN_FAILURES as exc:  # pluggy validates hookimpl signatures here
            return _error_text(exc)
        callers = self._pm.get_hookcallers(plugin) or []
        unknown = sorted(
            hc.name
            for hc in callers
            if not hc.has_spec()
            and not any(i.plugin is plugin and i.optionalhook for i in hc.get_hookimpls())
        )
        known = [hc for hc in callers if hc.has_spec()]
        error = None
        if unknown:
            error = (
                f"implements unknown hook(s) {', '.join(unknown)}; mixkit's hooks are "
                f"{', '.join(KINDS.values())} (mark a hook of a newer mixkit optionalhook=True)"
            )
        elif not known:
            error = (
                f"{type(plugin).__name__} {plugin!r} implements no mixkit hook: a plugin is a module "
                f"or object with functions named {' or '.join(KINDS.values())} marked @mixkit.hookimpl"
            )
        if error is not None:
            self._pm.unregister(plugin)
            return error
        self._order.append(name)
        self._sources[name] = source
        self._components = None
        return None

    # -- runtime registration ----------------------------------------------------------------

    def register(self, plugin: Any, name: str | None = None) -> str:
        """Register a plugin object (module, class or instance) at run time; returns its name.

        The plugin's hooks are called at once: a plugin that cannot be loaded is refused
        with the reason (:class:`PluginCollisionError` for a name that is taken).
        """
        with self._lock:
            self._ensure_loaded()
            name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
            if not isinstance(name, str):
                raise TypeError(f"name must be a string, got {type(name).__name__}")
            if self._pm.has_plugin(name) or name in self._load_errors:
                raise ValueError(f"a plugin named {name!r} is already registered; pass another name=")
            if self._pm.is_registered(plugin):
                raise ValueError(f"{plugin!r} is already registered as {self._pm.get_name(plugin)!r}")
            error = self._register(plugin, name, "runtime")
            if error is not None:
                raise TypeError(f"cannot register plugin {name!r}: {error}")
            self.components()
            if name in self._hook_errors:
                error = self._hook_errors[name]
                self._drop(name)
                cls = PluginCollisionError if name in self._collisions else PluginError
                raise cls(f"cannot register plugin {name!r}: {error}")
            return name

    def _drop(self, name: str) -> None:
        self._pm.unregister(name=name)
        self._order.remove(name)
        self._sources.pop(name, None)
        self._extras.pop(name, None)
        self._components = None

    def unregister(self, name: str) -> None:
        """Remove a plugin registered under ``name``."""
        with self._lock:
            self._ensure_loaded()
            if self._pm.has_plugin(name):
                self._drop(name)
            elif self._load_errors.pop(name, None) is None:
                raise UnknownComponentError(f"no plugin named {name!r} is registered")

    # -- collecting ---------------------------------------------------------------------------

    def plugins(self) -> list[PluginInfo]:
        with self._lock:
            self.components()  # hook failures are found when the hooks are called
            infos = {n: PluginInfo(n, self._sources[n], self._hook_errors.get(n)) for n in self._order}
            infos.update(self._load_errors)
            return sorted(infos.values(), key=lambda p: (p.name != CORE_PLUGIN, p.name))

    def components(self) -> dict[str, dict[str, Component]]:
        with self._lock:
            self._ensure_loaded()
            if self._components is None:
                self._components = self._collect()
            return self._components

    def _contribution(self, name: str, seen: list[tuple[str, str]]) -> dict[str, dict[str, type]]:
        """What plugin ``name`` registers, per kind; raises ValueError when it is malformed.

        ``seen`` receives every ``(kind, name)`` met before a failure, so that asking for
        one of them later says which plugin failed instead of "unknown name".
        """
        plugin = self._pm.get_plugin(name)
        out: dict[str, dict[str, type]] = {}
        for kind, hook_name in KINDS.items():
            impls = [i for i in getattr(self._pm.hook, hook_name).get_hookimpls() if i.plugin is plugin]
            table: dict[str, type] = {}
            for impl in impls:
                try:
                    result = impl.function()
                except _PLUGIN_FAILURES as exc:
                    raise ValueError(f"{hook_name}() raised {_error_text(exc)}") from None
                if result is None:
                    continue
                if not isinstance(result, Mapping):
                    raise ValueError(f"{hook_name}() returned a {type(result).__name__}, expected {{name: class}}")
                for key, value in result.items():
                    if isinstance(key, str) and key:
                        seen.append((kind, key))
                    if not isinstance(key, str) or not key:
                        raise ValueError(f"{hook_name}() returned the name {key!r}; names are non-empty strings")
                    if not isinstance(value, type):
                        raise ValueError(
                            f"{hook_name}() maps {key!r} to {value!r}, which is not a class; "
                            f"register the {kind} class itself"
                        )
                    table[key] = value
            out[kind] = table
        return out

    def _collect(self) -> dict[str, dict[str, Component]]:
        found: dict[str, dict[str, Component]] = {kind: {} for kind in KINDS}
        self._hook_errors = {}
        self._collisions = set()
        self._unavailable = {}
        for name in self._order:  # load order: built-ins first, so they win every collision
            seen: list[tuple[str, str]] = []
            try:
                contribution = self._contribution(name, seen)
            except ValueError as exc:
                self._hook_errors[name] = str(exc)
                for key in seen:
                    self._unavailable.setdefault(key, name)
                continue
            taken = [(kind, n) for kind, table in contribution.items() for n in table if n in found[kind]]
            if taken:
                kind, n = taken[0]
                owner = found[kind][n].plugin
                self._collisions.add(name)
                self._hook_errors[name] = (
                    f"{kind} {n!r} is already registered by plugin {owner!r}; plugin {name!r} was not "
                    f"loaded: uninstall one of them, or choose another name"
                )
                for kind, table in contribution.items():
                    for n in table:
                        self._unavailable.setdefault((kind, n), name)
                continue
            extra, requires = self._extras.get(name, (None, ()))
            for kind, table in contribution.items():
                for n, cls in table.items():
                    found[kind][n] = Component(kind, n, cls, _describe(cls), name, extra, requires)
        return {kind: dict(sorted(table.items())) for kind, table in found.items()}

    # -- lookup ---------------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> Component:
        with self._lock:
            return self._get(kind, name)

    def _get(self, kind: str, name: str) -> Component:
        tables = self.components()
        if kind not in tables:
            raise ValueError(f"kind must be one of {sorted(tables)}, got {kind!r}")
        if not isinstance(name, str):
            raise TypeError(f"a {kind} is named by a string, got {type(name).__name__} {name!r}")
        table = tables[kind]
        if name in table:
            return table[name]
        plural = "densities" if kind == "density" else f"{kind}s"
        owner = self._unavailable.get((kind, name))
        if owner is not None:
            raise UnknownComponentError(
                f"{kind} {name!r} is unavailable: plugin {owner!r} failed to load: {self._hook_errors[owner]}. "
                f"Available {plural}: {', '.join(table) or '(none)'}."
            )
        close = difflib.get_close_matches(name, list(table), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        failed = [p for p in self.plugins() if p.error]
        note = ""
        if failed:
            note = " Plugins that failed to load (one may provide it): " + "; ".join(
                f"{p.name} ({p.error})" for p in failed
            ) + "."
        raise UnknownComponentError(
            f"unknown {kind} {name!r}.{hint} Available {plural}: {', '.join(table) or '(none)'}.{note} "
            "Run `mixkit list` to see plugins and those that failed to load."
        )

    def create(self, kind: str, name: str, /, **kwargs: Any) -> Any:
        component = self.get(kind, name)
        missing = component.missing
        if missing:
            raise MissingExtraError(
                f"the {name!r} {kind} needs the {component.extra!r} extra ({', '.join(missing)} "
                f"not installed): pip install 'mixkit[{component.extra}]'"
            )
        return component.cls(**kwargs)


_registry = Registry()


def get_registry() -> Registry:
    """The process-wide registry used by :func:`create_mixer` and friends."""
    return _registry


def available(kind: str | None = None) -> dict:
    """What is registered: ``{"mixer": {name: Component}, "density": {...}}``.

    With ``kind`` ("mixer" or "density"), only that table. Each
    :class:`Component` carries the class, its one-line description, the
    plugin it came from and the extra it needs.
    """
    table = _registry.components()
    if kind is None:
        return dict(table)
    if kind not in table:
        raise ValueError(f"kind must be one of {sorted(table)}, got {kind!r}")
    return dict(table[kind])


def plugins() -> list[PluginInfo]:
    """Every plugin mixkit knows of, including those that failed and were dropped."""
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
    if plugin is None:
        raise TypeError("register_plugin needs a plugin: a module or object with @mixkit.hookimpl functions")
    return _registry.register(plugin, name)


def unregister_plugin(name: str) -> None:
    """Undo :func:`register_plugin`."""
    _registry.unregister(name)
