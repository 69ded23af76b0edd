"""The ``mixkit`` command in a separate process: ``list`` with healthy, broken and selected
plugins and missing extras, ``--version``; and the process-wide registry surviving every
kind of broken plugin at once (GenLabel and MixCollate by name included)."""

import os
import subprocess
import sys

import pytest
from test_registry import BROKEN, PLUGIN_SRC, make_distribution

import mixkit


def run(*args, site=None, env=None, code=None):
    environ = {k: v for k, v in os.environ.items() if k != "MIXKIT_LOAD_PLUGINS"}
    if site is not None:
        environ["PYTHONPATH"] = os.pathsep.join([str(site), environ.get("PYTHONPATH", "")])
    environ.update(env or {})
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "mixkit", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=environ)


@pytest.fixture
def site(tmp_path):
    make_distribution(tmp_path, "mk-identity", "mk_identity_plugin", PLUGIN_SRC, "identity-plugin")
    for kind, (source, _) in BROKEN.items():
        make_distribution(tmp_path, f"mk-{kind}", "mk_" + kind.replace("-", "_"), source, kind)
    return tmp_path


def test_list_shows_components_plugins_and_every_failure(site):
    res = run("list", site=site)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.index("mixers:") < out.index("densities:") < out.index("plugins:")
    assert "  mixup " in out and "[mixkit]" in out and "  manifold_mixup " not in out
    assert "  flow " in out and "[flow]" in out and "needs the" not in out  # every extra is installed here
    assert "  identity " in out and "[identity-plugin]" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    for kind, (_, fragment) in BROKEN.items():
        assert "FAILED to load" in lines[kind] and fragment in lines[kind], lines[kind]
    assert "third-party plugins loaded" not in out


def test_every_builtin_works_in_a_process_with_every_broken_plugin(site):
    code = (
        "import torch, mixkit\n"
        "x, y = torch.randn(8, 2), torch.tensor([0, 1] * 4)\n"
        "for name in ('gaussian', 'kde', 'online_gaussian'):\n"
        "    mixkit.create_density(name).fit(x, y)\n"
        "for name in ('flow', 'vae', 'gan'):\n"
        "    mixkit.create_density(name)\n"
        "relabel = mixkit.GenLabel('gaussian').fit(x, y)\n"
        "collate = mixkit.MixCollate('mixup', num_classes=2, relabel=relabel, seed=0)\n"
        "assert collate([(x[i], y[i]) for i in range(8)])[1].shape == (8, 2)\n"
        "images = torch.randn(8, 1, 4, 4)\n"
        "print(tuple(mixkit.create_mixer('cutmix', num_classes=2, seed=0)(images, y).y.shape))\n"
        "try:\n"
        "    mixkit.create_density('gauss-instance')\n"
        "except LookupError as e:\n"
        "    print(e)\n"
    )
    res = run(site=site, code=code)
    assert res.returncode == 0, res.stderr  # sys.exit() in a plugin did not end the process
    shape, message = res.stdout.strip().splitlines()
    assert shape == "(8, 2)"
    assert message.startswith("density 'gauss-instance' is unavailable: plugin 'not-a-class' failed to load")


def test_list_shows_the_extra_a_density_needs_when_it_is_missing():
    code = "import sys; sys.modules['normflows'] = None\nfrom mixkit.cli import main\nmain(['list'])"
    res = run(code=code)
    assert res.returncode == 0, res.stderr
    (flow,) = [line for line in res.stdout.splitlines() if line.startswith("  flow ") and "[flow]" in line]
    assert flow.endswith("[flow]  needs the 'flow' extra: pip install 'mixkit[flow]'")
    (vae,) = [line for line in res.stdout.splitlines() if line.startswith("  vae ") and "[vae]" in line]
    assert "needs the" not in vae


@pytest.mark.parametrize(("value", "shown"), [("", "none"), ("identity-plugin", "identity-plugin")])
def test_list_with_mixkit_load_plugins(site, value, shown):
    res = run("list", site=site, env={"MIXKIT_LOAD_PLUGINS": value})
    assert res.returncode == 0, res.stderr
    assert ("  identity " in res.stdout) == bool(value)
    assert "FAILED" not in res.stdout  # the broken plugins were not selected, so not loaded
    assert f"third-party plugins loaded: {shown} (set by MIXKIT_LOAD_PLUGINS)" in res.stdout
    assert "  mixup " in res.stdout and "  flow " in res.stdout  # default plugins always load


def test_version_and_help():
    res = run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"mixkit {mixkit.__version__}"
    res = run()
    assert res.returncode == 2 and "list" in res.stdout and "demo" in res.stdout
