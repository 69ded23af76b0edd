"""Plugin registry: discovery through entry points, errors, runtime registration, CLI."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import mixkit
from mixkit.registry import PluginCollisionError, Registry, UnknownComponentError

PLUGIN_SRC = textwrap.dedent(
    '''
    import torch
    from mixkit import Mixer, MixParams, hookimpl

    class Identity(Mixer):
        """Identity: leaves the batch unmixed (a third-party test mixer)."""

        def draw(self, n, shape, generator, lam=None):
            return MixParams(torch.ones(n, dtype=torch.float64), torch.arange(n))

        def mix_inputs(self, x, params):
            return x.clone()

    @hookimpl
    def mixkit_mixers():
        return {"identity": Identity}
    '''
)


def make_distribution(root, dist, module, source, entry_name):
    """Write an installed-looking distribution: a module and its *.dist-info with entry points."""
    (root / f"{module}.py").write_text(source)
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"  # the wheel naming rule
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[mixkit]\n{entry_name} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("mk_identity_plugin", "mk_broken_plugin"):
        sys.modules.pop(name, None)


def test_builtins_register_through_the_hooks():
    table = mixkit.available()
    assert {"mixup", "cutmix"} <= set(table["mixer"])
    assert "gaussian" in table["density"]
    comp = table["mixer"]["mixup"]
    assert comp.plugin == "mixkit" and comp.cls is mixkit.Mixup
    assert comp.description.startswith("Mixup")
    assert any(p.name == "mixkit" and p.source == "built-in" for p in mixkit.plugins())


def test_third_party_plugin_discovered_from_entry_point(site):
    make_distribution(site, "mk-identity", "mk_identity_plugin", PLUGIN_SRC, "identity-plugin")
    registry = Registry()
    comp = registry.get("mixer", "identity")
    assert comp.plugin == "identity-plugin"
    assert comp.description == "Identity: leaves the batch unmixed (a third-party test mixer)."
    info = {p.name: p for p in registry.plugins()}["identity-plugin"]
    assert info.error is None and "mk-identity 0.1" in info.source
    mixer = registry.create("mixer", "identity", num_classes=3)
    out = mixer(torch.randn(4, 2), torch.tensor([0, 1, 2, 0]))
    assert torch.equal(out.y, torch.eye(3)[[0, 1, 2, 0]])


def test_broken_plugin_is_reported_not_fatal(site):
    make_distribution(site, "mk-broken", "mk_broken_plugin", "raise ImportError('no gpu lib here')\n", "broken")
    registry = Registry()
    assert "mixup" in registry.components()["mixer"]  # the rest still works
    info = {p.name: p for p in registry.plugins()}["broken"]
    assert info.error == "ImportError: no gpu lib here"


def test_unknown_name_lists_names_and_closest_match():
    with pytest.raises(UnknownComponentError) as err:
        mixkit.create_mixer("mixpu")
    msg = str(err.value)
    assert "Did you mean 'mixup'?" in msg
    assert "cutmix" in msg and "mixup" in msg
    with pytest.raises(UnknownComponentError, match="unknown density 'gausian'.*'gaussian'"):
        mixkit.create_density("gausian")


def test_collision_names_both_plugins():
    class Clash:
        @mixkit.hookimpl
        def mixkit_mixers(self):
            return {"mixup": mixkit.Mixup}

    name = mixkit.register_plugin(Clash(), name="clash")
    try:
        with pytest.raises(PluginCollisionError) as err:
            mixkit.available()
        assert "'mixkit'" in str(err.value) and "'clash'" in str(err.value)
    finally:
        mixkit.unregister_plugin(name)
    assert "mixup" in mixkit.available("mixer")


def test_runtime_registration_and_removal():
    class Extra:
        @mixkit.hookimpl
        def mixkit_densities(self):
            return {"gaussian-diag": mixkit.Gaussian}

    mixkit.register_plugin(Extra(), name="extra")
    try:
        assert mixkit.available("density")["gaussian-diag"].plugin == "extra"
        with pytest.raises(ValueError, match="already registered"):
            mixkit.register_plugin(Extra(), name="extra")
    finally:
        mixkit.unregister_plugin("extra")
    assert "gaussian-diag" not in mixkit.available("density")
    with pytest.raises(ValueError, match="kind must be one of"):
        mixkit.available("mixers")


def _run_cli(*args, pythonpath=None):
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "mixkit", *args], capture_output=True, text=True, env=env)


def test_cli_list_shows_components_plugins_and_failures(site):
    make_distribution(site, "mk-identity", "mk_identity_plugin", PLUGIN_SRC, "identity-plugin")
    make_distribution(site, "mk-broken", "mk_broken_plugin", "raise ImportError('boom')\n", "broken")
    res = _run_cli("list", pythonpath=site)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.index("mixers:") < out.index("densities:") < out.index("plugins:")
    assert "  mixup " in out and "[mixkit]" in out
    assert "  identity " in out and "[identity-plugin]" in out
    assert "  gaussian " in out
    assert "broken" in out and "FAILED to load" in out and "ImportError: boom" in out


def test_cli_version():
    res = _run_cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"mixkit {mixkit.__version__}"


def test_import_does_not_pull_optional_dependencies():
    code = (
        "import sys, mixkit; mixkit.available(); "
        "print(sorted(m for m in ('torchvision', 'timm', 'normflows', 'pyro', 'sklearn', 'matplotlib') "
        "if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_the_readme_plugin_example_works():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "examples" / "plugin_nearest_mean.py"
    spec = importlib.util.spec_from_file_location("plugin_nearest_mean", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    mixkit.register_plugin(module, name="nearest-mean-plugin")
    try:
        x = torch.tensor([[0.0, 0.0], [0.2, 0.0], [4.0, 0.0], [4.2, 0.0]])
        y = torch.tensor([0, 0, 1, 1])
        relabel = mixkit.GenLabel("nearest-mean").fit(x, y)
        description = mixkit.available("density")["nearest-mean"].description
        assert description == "Unit-variance Gaussian around each class mean."
        batch = mixkit.Mixup(num_classes=2, seed=0)(x, y)
        out = relabel(batch)
        torch.testing.assert_close(out.y.sum(1), torch.ones(4))
        fresh = mixkit.create_density("nearest-mean")
        fresh.load_state_dict(relabel.density.state_dict())
        assert torch.equal(fresh.log_prob(x), relabel.density.log_prob(x))
    finally:
        mixkit.unregister_plugin("nearest-mean-plugin")
