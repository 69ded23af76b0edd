"""The README's "Coming from timm / torchvision" section runs, and maps every option of theirs."""

import inspect
import re
from pathlib import Path

import torch

from mixkit.timm_compat import TIMM_DEFAULTS

README = Path(__file__).resolve().parents[1] / "README.md"
TITLE = "## Coming from timm / torchvision"


def section() -> str:
    text = README.read_text()
    start = text.index(TITLE)
    end = text.find("\n## ", start + len(TITLE))
    return text[start:end if end >= 0 else None]


def snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", section(), flags=re.S)


def test_the_snippets_run_and_do_what_they_say():
    code = snippets()
    assert len(code) >= 3
    ns: dict = {}
    for block in code:  # one namespace, in order, as a reader would run them
        exec(compile(block, str(README), "exec"), ns)
    assert ns["x_mixed"].shape == (8, 3, 32, 32) and ns["y_soft"].shape == (16, 10)  # the loop's last batch
    assert not ns["collate"].active  # epoch 2 >= off_epoch
    assert ns["mixup_fn"].mixup_enabled is False
    assert ns["y"].shape == (16, 10)
    assert ns["batch"]["label"].shape == (8, 10) and torch.equal(ns["batch"]["id"], torch.arange(8))


def test_every_timm_and_torchvision_option_is_mapped():
    text = section()
    for name in TIMM_DEFAULTS:
        assert f"`{name}`" in text, name
    from torchvision.transforms import v2
    for cls in (v2.MixUp, v2.CutMix):
        for name in inspect.signature(cls).parameters:
            assert f"{name}=" in text, (cls.__name__, name)
