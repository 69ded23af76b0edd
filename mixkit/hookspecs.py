"""The hooks a mixkit plugin implements.

A plugin is any module or object with functions decorated by
:data:`mixkit.hookimpl`. Third-party plugins are found through the ``mixkit``
entry-point group; mixkit's own mixers and densities are registered through the
same hooks (see :mod:`mixkit.builtin_plugin`), so nothing built in is special.

Each hook returns a mapping ``name -> class``. The first line of the class
docstring is the one-line description shown by ``mixkit list``.
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
