"""The hooks a mixkit plugin implements.

A plugin is any module or object with functions decorated by
:data:`mixkit.hookimpl`. Third-party plugins are found through the ``mixkit``
entry-point group (``MIXKIT_LOAD_PLUGINS`` selects them); mixkit's own mixers and
densities (``mixkit.builtin_plugin``, and ``mixkit_plugins.flow``/``vae``/``gan``)
are the registry's ``DEFAULT_PLUGINS`` and use the same hooks, so nothing built in
is special.

Each hook takes no argument and returns a mapping ``{name: class}`` (non-empty
string names, classes as values). The first line of the class docstring is the
one-line description shown by ``mixkit list``. A hook that raises or returns
anything else drops its plugin, which ``mixkit list`` then reports.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("mixkit")
hookimpl = pluggy.HookimplMarker("mixkit")


@hookspec
def mixkit_mixers() -> dict[str, type]:
    """Return the mixers this plugin contributes, as ``{name: class}``.

    A mixer class is called on a batch ``(x, y)`` and returns a
    :class:`mixkit.MixedBatch`; see :class:`mixkit.Mixer`.
    """


@hookspec
def mixkit_densities() -> dict[str, type]:
    """Return the class-conditional densities this plugin contributes, as ``{name: class}``.

    A density class follows :class:`mixkit.Density`: ``fit(x, y) -> self``,
    ``log_prob(x) -> (B, K)``, ``state_dict``/``load_state_dict``, ``to(device)``.
    """
