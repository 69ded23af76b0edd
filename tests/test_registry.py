"""Plugin registry: default plugins by name, entry points, MIXKIT_LOAD_PLUGINS, isolation of
broken plugins, runtime registration, missing extras, and the wheel that ships it all."""

import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import torch

import mixkit
from mixkit.registry import (
    DEFAULT_PLUGINS,
    EXTRAS,
    MissingExtraError,
    PluginCollisionError,
    PluginError,
    Registry,
    UnknownComponentError,
)

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_MIXERS = {"mixup", "cutmix", "genmix"}
BUILTIN_DENSITIES = {"gaussian", "kde", "online_gaussian", "flow", "vae", "gan"}

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


def hook_plugin(body: str, hook: str = "mixkit_densities", args: str = "") -> str:
    """Source of a plugin module whose one hook runs ``body``."""
    return (
        "import mixkit\nfrom mixkit import hookimpl\n\n"
        f"@hookimpl\ndef {hook}({args}):\n" + textwrap.indent(textwrap.dedent(body).strip(), "    ") + "\n"
    )


# every way a plugin can be broken: (module source, fragment of the reported error)
BROKEN = {
    "import-raises": ("raise ImportError('no gpu lib here')\n", "ImportError: no gpu lib here"),
    "import-exits": ("import sys\nsys.exit(3)\n", "SystemExit(3)"),
    "hook-raises": (hook_plugin("raise RuntimeError('hook blew up')"), "mixkit_densities() raised RuntimeError"),
    "hook-exits": (hook_plugin("import sys; sys.exit(1)"), "mixkit_densities() raised SystemExit"),
    "not-a-dict": (hook_plugin("return [mixkit.Gaussian]"), "returned a list, expected {name: class}"),
    "non-string-key": (hook_plugin("return {3: mixkit.Gaussian}"), "returned the name 3"),
    "empty-key": (hook_plugin("return {'': mixkit.Gaussian}"), "returned the name ''"),
    "not-a-class": (hook_plugin("return {'gauss-instance': mixkit.Gaussian()}"), "which is not a class"),
    "builtin-name": (hook_plugin("return {'mixup': mixkit.Mixup}", "mixkit_mixers"), "already registered by plugin"),
    "wrong-signature": (hook_plugin("return {}", args="num_classes"), "num_classes"),
    "unknown-hook": (hook_plugin("return {}", hook="mixkit_density"), "unknown hook(s) mixkit_density"),
    "no-hooks": ("X = 1\n", "implements no mixkit hook"),
}


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
    monkeypatch.delenv("MIXKIT_LOAD_PLUGINS", raising=False)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("mk_"):
            del sys.modules[name]


def assert_builtins_work(registry):
    mixers, densities = registry.components()["mixer"], registry.components()["density"]
    assert BUILTIN_MIXERS <= set(mixers) and BUILTIN_DENSITIES <= set(densities)
    assert mixers["mixup"].plugin == "mixkit" and mixers["mixup"].cls is mixkit.Mixup
    x, y = torch.randn(8, 2), torch.tensor([0, 1] * 4)
    for name in BUILTIN_MIXERS - {"genmix"}:
        assert registry.create("mixer", name, num_classes=2, seed=0)(torch.randn(8, 1, 4, 4), y).y.shape == (8, 2)
    for name in ("gaussian", "kde", "online_gaussian"):
        assert registry.create("density", name).fit(x, y).log_prob(x).shape == (8, 2)
    assert {p.name for p in registry.plugins() if p.error is None} >= {"mixkit", "flow", "vae", "gan"}


# -- built-ins ------------------------------------------------------------------------------------


def test_builtins_are_default_plugins_registered_through_the_hooks():
    table = mixkit.available()
    assert set(table["mixer"]) >= BUILTIN_MIXERS and "manifold_mixup" not in table["mixer"]
    assert set(table["density"]) >= BUILTIN_DENSITIES
    comp = table["mixer"]["mixup"]
    assert comp.plugin == "mixkit" and comp.cls is mixkit.Mixup and comp.extra is None
    assert comp.description.startswith("Mixup")
    assert table["density"]["flow"].plugin == "flow" and table["density"]["flow"].extra == "flow"
    assert table["density"]["vae"].extra == "vae" and table["density"]["gan"].extra is None
    sources = {p.name: p.source for p in mixkit.plugins()}
    assert sources["mixkit"] == "built-in (mixkit.builtin_plugin)"
    assert sources["flow"] == "built-in (mixkit_plugins.flow)"
    assert DEFAULT_PLUGINS[0] == "mixkit.builtin_plugin"


def test_default_plugins_load_even_with_third_party_loading_off():
    registry = Registry(load_plugins=False)
    assert_builtins_work(registry)


def test_extras_match_the_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    import_names = {"normflows": "normflows", "pyro-ppl": "pyro"}  # distribution -> top-level module
    for module, (extra, modules) in EXTRAS.items():
        assert module in DEFAULT_PLUGINS
        declared = {req.split(">")[0].split("=")[0].strip() for req in extras[extra]}
        assert {import_names[d] for d in declared} == set(modules), extra
        assert f"mixkit[{extra}" in extras["all"][0] or any(extra in a for a in extras["all"])


# -- third-party plugins --------------------------------------------------------------------------


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


@pytest.mark.parametrize(
    ("value", "loaded"),
    [
        (None, {"identity-plugin", "other-plugin"}),  # unset: every installed plugin
        ("", set()),  # empty: none
        ("identity-plugin", {"identity-plugin"}),  # by entry-point name
        ("mk-other, ", {"other-plugin"}),  # by distribution name; blanks ignored
        ("MK_Identity,other-plugin", {"identity-plugin", "other-plugin"}),  # names normalized
    ],
)
def test_mixkit_load_plugins_selects_third_party_plugins(site, monkeypatch, value, loaded):
    make_distribution(site, "mk-identity", "mk_identity_plugin", PLUGIN_SRC, "identity-plugin")
    other = PLUGIN_SRC.replace('"identity"', '"identity2"')
    make_distribution(site, "mk-other", "mk_other_plugin", other, "other-plugin")
    if value is not None:
        monkeypatch.setenv("MIXKIT_LOAD_PLUGINS", value)
    registry = Registry()
    names = {p.name for p in registry.plugins() if p.error is None}
    assert names - {"mixkit", "flow", "vae", "gan"} == loaded
    assert ("identity" in registry.components()["mixer"]) == ("identity-plugin" in loaded)
    assert_builtins_work(registry)


def test_mixkit_load_plugins_reports_a_name_that_is_not_installed(site, monkeypatch):
    monkeypatch.setenv("MIXKIT_LOAD_PLUGINS", "mk-nowhere,flow")  # flow: a default plugin, loaded anyway
    infos = {p.name: p for p in Registry().plugins()}
    assert "not installed" in infos["mk-nowhere"].error and "MIXKIT_LOAD_PLUGINS" in infos["mk-nowhere"].source
    assert infos["flow"].error is None


def test_load_plugins_argument_overrides_the_environment(site, monkeypatch):
    make_distribution(site, "mk-identity", "mk_identity_plugin", PLUGIN_SRC, "identity-plugin")
    monkeypatch.setenv("MIXKIT_LOAD_PLUGINS", "")
    assert "identity" in Registry(load_plugins=True).components()["mixer"]
    assert "identity" in Registry(load_plugins=["identity-plugin"]).components()["mixer"]
    assert "identity" not in Registry(load_plugins=False).components()["mixer"]
    with pytest.raises(TypeError, match="not a string"):
        Registry(load_plugins="identity-plugin")


# -- isolation: a broken plugin breaks only itself --------------------------------------------------


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_a_broken_plugin_breaks_only_itself(site, kind):
    source, fragment = BROKEN[kind]
    module = "mk_" + kind.replace("-", "_")
    make_distribution(site, f"mk-{kind}", module, source, kind)
    make_distribution(site, "mk-identity", "mk_identity_plugin", PLUGIN_SRC, "identity-plugin")
    registry = Registry()
    assert_builtins_work(registry)
    assert "identity" in registry.components()["mixer"]  # a healthy neighbour is unaffected
    info = {p.name: p for p in registry.plugins()}[kind]
    assert info.error is not None and fragment in info.error, info.error
    # the call that needs a component it cannot provide names the failure
    with pytest.raises(UnknownComponentError) as err:
        registry.create("density", "no-such-density")
    assert f"{kind} (" in str(err.value) and fragment in str(err.value)


def test_a_component_of_a_dropped_plugin_says_why_it_is_unavailable(site):
    source = hook_plugin("return {'near': mixkit.Gaussian, 'bad': 'not a class'}")
    make_distribution(site, "mk-half", "mk_half_plugin", source, "half")
    registry = Registry()
    assert "near" not in registry.components()["density"]  # a malformed plugin is dropped whole
    with pytest.raises(UnknownComponentError, match="density 'near' is unavailable: plugin 'half' failed"):
        registry.create("density", "near")


def test_a_collision_between_third_party_plugins_keeps_the_first(site):
    make_distribution(site, "mk-aaa", "mk_aaa_plugin", PLUGIN_SRC, "aaa")
    make_distribution(site, "mk-bbb", "mk_bbb_plugin", PLUGIN_SRC.replace("Identity:", "Other:"), "bbb")
    registry = Registry()
    comp = registry.get("mixer", "identity")
    assert comp.plugin == "aaa" and comp.description.startswith("Identity:")
    info = {p.name: p for p in registry.plugins()}
    assert info["aaa"].error is None
    assert "mixer 'identity' is already registered by plugin 'aaa'" in info["bbb"].error
    registry.unregister("aaa")  # with the first gone, the second loads
    assert registry.get("mixer", "identity").plugin == "bbb"


def test_a_plugin_of_the_same_module_is_not_registered_twice(site):
    # an old copy of a first-party plugin still installed as an entry point: same module, skipped
    info = site / "mk_old_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mk-old-plugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mixkit]\nflow = mixkit_plugins.flow\n")
    registry = Registry()
    assert registry.get("density", "flow").plugin == "flow"
    assert all(p.error is None for p in registry.plugins())


# -- runtime registration ---------------------------------------------------------------------------


def test_register_plugin_refuses_an_object_with_no_hooks():
    for obj in (42, object(), "mixup"):
        with pytest.raises(TypeError, match="implements no mixkit hook"):
            mixkit.register_plugin(obj)
    assert {p.name for p in mixkit.plugins()} >= {"mixkit"} and "int" not in {p.name for p in mixkit.plugins()}


def test_register_plugin_refuses_a_broken_plugin_and_keeps_builtins():
    class Raises:
        @mixkit.hookimpl
        def mixkit_densities(self):
            raise RuntimeError("nope")

    class Signature:
        @mixkit.hookimpl
        def mixkit_mixers(self, num_classes):
            return {}

    with pytest.raises(PluginError, match="mixkit_densities\\(\\) raised RuntimeError: nope"):
        mixkit.register_plugin(Raises(), name="raises")
    with pytest.raises(TypeError, match="num_classes"):
        mixkit.register_plugin(Signature(), name="signature")
    names = {p.name for p in mixkit.plugins()}
    assert "raises" not in names and "signature" not in names
    assert mixkit.create_density("gaussian") is not None and "mixup" in mixkit.available("mixer")


def test_collision_with_a_builtin_is_refused_naming_both_plugins():
    class Clash:
        @mixkit.hookimpl
        def mixkit_mixers(self):
            return {"mixup": mixkit.Mixup}

    with pytest.raises(PluginCollisionError) as err:
        mixkit.register_plugin(Clash(), name="clash")
    assert "'mixkit'" in str(err.value) and "'clash'" in str(err.value)
    assert mixkit.available("mixer")["mixup"].plugin == "mixkit"
    assert "clash" not in {p.name for p in mixkit.plugins()}


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
    with pytest.raises(UnknownComponentError, match="no plugin named 'extra'"):
        mixkit.unregister_plugin("extra")
    with pytest.raises(ValueError, match="kind must be one of"):
        mixkit.available("mixers")


# -- errors -----------------------------------------------------------------------------------------


def test_unknown_name_lists_names_and_closest_match():
    with pytest.raises(UnknownComponentError) as err:
        mixkit.create_mixer("mixpu")
    msg = str(err.value)
    assert "Did you mean 'mixup'?" in msg
    assert "cutmix" in msg and "mixup" in msg
    with pytest.raises(UnknownComponentError, match="unknown density 'gausian'.*'gaussian'"):
        mixkit.create_density("gausian")
    with pytest.raises(UnknownComponentError, match="unknown mixer 'manifold_mixup'"):
        mixkit.create_mixer("manifold_mixup")  # a model wrapper now, not a registered mixer


@pytest.mark.parametrize(("name", "module"), [("flow", "normflows"), ("vae", "pyro")])
def test_a_missing_extra_is_named_by_create_and_genlabel(monkeypatch, name, module):
    monkeypatch.setitem(sys.modules, module, None)  # find_spec -> None and import raises: "not installed"
    comp = mixkit.available("density")[name]
    assert comp.missing == (module,)
    assert comp.install_hint == f"pip install 'mixkit[{name}]'"
    expected = rf"the '{name}' density needs the '{name}' extra \({module} not installed\): "
    expected += rf"pip install 'mixkit\[{name}\]'"
    with pytest.raises(MissingExtraError, match=expected):
        mixkit.create_density(name)
    with pytest.raises(ImportError, match=rf"pip install 'mixkit\[{name}\]'"):
        mixkit.GenLabel(name)
    assert mixkit.create_density("gaussian") is not None  # nothing else is affected


def test_import_does_not_pull_optional_dependencies():
    code = (
        "import sys, mixkit; mixkit.available(); mixkit.plugins(); "
        "print(sorted(m for m in ('torchvision', 'timm', 'normflows', 'pyro', 'sklearn', 'matplotlib', "
        "'lightning', 'pytorch_lightning') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_the_readme_plugin_example_works():
    import importlib.util

    path = ROOT / "examples" / "plugin_nearest_mean.py"
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


# -- one distribution -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """mixkit's wheel, built offline from a copy of the sources (the work tree is left clean)."""
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "mixkit", src / "mixkit", ignore=ignore)
    shutil.copytree(ROOT / "plugins" / "mixkit_plugins", src / "plugins" / "mixkit_plugins", ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
           "-w", str(out), str(src)]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    (path,) = out.glob("mixkit-*.whl")
    return path


def test_the_wheel_ships_the_first_party_plugins(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        (info,) = {n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA")}
        metadata = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "mixkit").rglob("*.py")}
    sources |= {p.relative_to(ROOT / "plugins").as_posix() for p in (ROOT / "plugins" / "mixkit_plugins").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    for module in DEFAULT_PLUGINS:
        assert module.replace(".", "/") + ".py" in names
    assert not any(n.startswith(("plugins/", "tests/", "benchmarks/")) for n in names)
    assert "Requires-Dist: normflows>=1.7; extra == \"flow\"" in metadata
    assert "Requires-Dist: pyro-ppl>=1.8; extra == \"vae\"" in metadata
    # the default plugins load by module name: no entry point of mixkit's own to load them twice
    assert "[console_scripts]\nmixkit = mixkit.cli:main" in entry_points and "[mixkit]" not in entry_points


def test_the_wheel_alone_provides_every_builtin(wheel, tmp_path):
    code = (
        "import mixkit, mixkit_plugins, sys; "
        f"assert mixkit.__file__.startswith({str(wheel)!r}) and mixkit_plugins.__file__.startswith({str(wheel)!r}); "
        "print(sorted(mixkit.available('density')), sorted(mixkit.available('mixer')), "
        "[p.error for p in mixkit.plugins() if p.error])"
    )
    env = {"PYTHONPATH": str(wheel), "MIXKIT_LOAD_PLUGINS": "", "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == (
        "['flow', 'gan', 'gaussian', 'kde', 'online_gaussian', 'vae'] ['cutmix', 'genmix', 'mixup'] []"
    )
