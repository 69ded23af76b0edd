"""What every protocol shares: a name, a one-paragraph summary, settings as data, a report block.

A protocol is a frozen dataclass of settings (one per suite family: ``synthetic``,
``tabular`` for the tabular and robust suites, ``image`` for the image and genmix suites).
Every report prints :meth:`Protocol.markdown` verbatim and ``results.json`` records
:meth:`Protocol.settings`, so a number can always be traced to the protocol that made it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

P = TypeVar("P", bound="Protocol")

#: the names every training suite accepts for ``--protocol``
PROTOCOL_NAMES = ("paper", "rigorous")


@dataclass(frozen=True)
class Protocol:
    """The settings of one protocol (subclasses add the fields of their suite family)."""

    name: str
    summary: str

    def settings(self) -> dict[str, Any]:
        """Every setting as JSON-ready data (what ``results.json`` records)."""
        return json.loads(json.dumps(asdict(self), default=str))

    def markdown(self) -> str:
        """The protocol block of a report: its summary and every setting, verbatim."""
        rows = [f"| `{k}` | {json.dumps(v)} |" for k, v in self.settings().items()
                if k not in ("name", "summary")]
        return "\n".join([f"## Protocol `{self.name}`", "", self.summary, "",
                          "| setting | value |", "|---|---|", *rows, ""])


def choose(table: dict[str, P], name: str) -> P:
    """The protocol called ``name`` from a family's table, with a clear error otherwise."""
    if name not in table:
        raise ValueError(f"unknown protocol {name!r}; choose one of {sorted(table)}")
    return table[name]


def sibling_results(out_dir: Any, protocol: str) -> dict[str, Any] | None:
    """The other protocol's ``results.json`` beside ``out_dir`` (``.../<suite>/<protocol>``), or
    ``None``: reports put both protocols' numbers side by side when both runs exist."""
    from pathlib import Path

    if out_dir is None:
        return None
    other = "rigorous" if protocol == "paper" else "paper"
    path = Path(out_dir).parent / other / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None
