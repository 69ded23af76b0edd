"""Protocols: the settings of each suite family under ``--protocol paper`` or ``rigorous``.

One module per family (:mod:`.synthetic`; :mod:`.tabular` for the tabular and robust
suites; :mod:`.image` for the image and genmix suites), each a table ``PROTOCOLS`` of
frozen dataclasses built on :class:`.base.Protocol`.
"""

from benchmarks.protocols.base import PROTOCOL_NAMES, Protocol

__all__ = ["PROTOCOL_NAMES", "Protocol"]
