"""GenLabel's relabel reads nothing back to the host and traces into one graph."""

import pytest
import torch
import torch._dynamo as dynamo
from torch._dynamo.testing import CompileCounter

import mixkit
from mixkit.genlabel import _class_softmax

K, D = 4, 5
CONFIGS = [
    {},
    {"gamma": 0.6, "top_k": 2, "temperature": 0.5},
    {"prior": torch.tensor([1.0, 2.0, 3.0, 4.0])},
    {"prior": "empirical", "diagnostics": False},
]


def fitted(**kw):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(400) % K
    x = torch.randn(400, D, generator=g) + 2 * torch.randn(K, D, generator=g)[y]
    return mixkit.GenLabel("gaussian", validate=False, **kw).fit(x, y), x, y


class NearestMean(mixkit.Density):
    """Isotropic unit Gaussians around the class means, scored in the batch's dtype
    without any buffer cache (GenLabel's own graph, whatever the density's caching)."""

    def _fit(self, x, y):
        means = torch.zeros(self.num_classes, x.shape[1], dtype=x.dtype).index_add_(0, y, x)
        self.register_buffer("means", means / torch.bincount(y)[:, None])

    def _log_prob(self, x):
        return -0.5 * torch.cdist(x, self.means.to(x.dtype)) ** 2


class Refuse:
    """Patches the tensor methods that read values back to the host so that they raise,
    except inside ``density.log_prob`` when ``density_may_read``: a density's own CPU
    fast paths are its business (on CUDA the sync-debug test covers the whole path)."""

    NAMES = ("item", "tolist", "__bool__", "__int__", "__float__", "__index__")

    def __init__(self, monkeypatch, density=None):
        self.inside = 0
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._guard(name, original))
        if density is not None:
            log_prob = density.log_prob

            def allowed(x):
                self.inside += 1
                try:
                    return log_prob(x)
                finally:
                    self.inside -= 1

            monkeypatch.setattr(density, "log_prob", allowed)

    def _guard(self, name, original):
        def guarded(t, *args, **kwargs):
            if self.inside:
                return original(t, *args, **kwargs)
            raise AssertionError(f"Tensor.{name} called on the hot path (a host sync on a GPU)")
        return guarded


@pytest.mark.parametrize("density", ["gaussian", "nearest"])
@pytest.mark.parametrize("kw", CONFIGS)
def test_relabel_reads_no_tensor_back_to_the_host(kw, density, monkeypatch):
    gl, x, y = fitted(**kw)
    if density == "nearest":  # pure torch: nothing at all may read back
        gl = mixkit.GenLabel(NearestMean(), validate=False, **kw).fit(x, y)
    batch = mixkit.Mixup(num_classes=K, seed=0)(x[:64], y[:64])
    expected = gl(batch).y  # first call: caches warm, nothing patched
    Refuse(monkeypatch, gl.density if density == "gaussian" else None)
    with pytest.raises(AssertionError, match="__bool__"):
        bool(torch.ones(()))  # the patch is live
    out = gl(batch)
    monkeypatch.undo()
    torch.testing.assert_close(out.y, expected)
    assert torch.isfinite(out.y).all()


def test_validate_is_opt_in_and_checks_the_labels():
    gl, x, y = fitted()
    batch = mixkit.Mixup(num_classes=K, seed=0)(x[:8], y[:8])
    bad = batch.replace(y=batch.y * 2)
    gl(bad)  # validate=False: not read
    gl.validate = True
    with pytest.raises(ValueError, match="rows summing to 1"):
        gl(bad)
    with pytest.raises(ValueError, match="labels passed to GenLabel"):
        gl(bad)
    gl.validate = None  # the default: the mixer checked the labels already, so not again
    out = gl(bad)
    gl.validate = False
    assert torch.equal(out.y, gl(bad).y)
    assert mixkit.GenLabel().validate is None


@pytest.mark.parametrize("kw", CONFIGS)
def test_a_relabel_compiled_before_any_eager_call_stays_one_graph(kw):
    """Nothing the first compiled call computes is cached where a later compiled call would
    guard on it (a cache filled inside a graph is a recompile on the next call)."""
    gl, x, y = fitted(**kw)
    batch = mixkit.Mixup(num_classes=K, seed=1)(x[:64], y[:64])
    dynamo.reset()
    counter = CompileCounter()
    compiled = torch.compile(gl, backend=counter, fullgraph=True)
    outs = [compiled(batch) for _ in range(4)]
    assert counter.frame_count == 1
    torch.testing.assert_close(outs[-1].y, gl(batch).y)
    dynamo.reset()


@pytest.mark.parametrize(("density", "dtype"), [("gaussian", torch.float32), ("gaussian", torch.float64),
                                                ("nearest", torch.float32), ("nearest", torch.float64)])
@pytest.mark.parametrize("kw", CONFIGS)
def test_relabel_compiles_into_one_graph(kw, density, dtype):
    gl, x, y = fitted(**kw)
    if density == "nearest":
        gl = mixkit.GenLabel(NearestMean(), validate=False, **kw).fit(x, y)
    gl.validate = None  # default: off while compiling
    batch = mixkit.Mixup(num_classes=K, seed=1, label_dtype=dtype)(x[:64].to(dtype), y[:64])
    expected = gl(batch)
    dynamo.reset()
    explained = dynamo.explain(gl)(batch)
    assert explained.graph_break_count == 0, explained.break_reasons
    counter = CompileCounter()
    compiled = torch.compile(gl, backend=counter, fullgraph=True)
    gl.reset_stats()
    for _ in range(4):  # a training loop: one graph, no recompile as counters and caches move
        out = compiled(batch)
    assert counter.frame_count == 1
    torch.testing.assert_close(out.y, expected.y)
    gl(batch)  # eager and compiled calls add up in the same stats
    assert gl.stats()["calls"] == 5 and gl.stats()["samples"] == 5 * 64
    if gl.diagnostics:
        assert gl.stats()["changed"] == 5 * int(expected.info["genlabel"]["changed"])
    dynamo.reset()


def test_nan_inputs_fall_back_without_a_sync(monkeypatch):
    gl, x, y = fitted()
    batch = mixkit.Mixup(num_classes=K, seed=0)(x[:6], y[:6])
    xb = batch.x.clone()
    xb[2, 1] = float("nan")
    xb[4] = float("inf")
    batch = batch.replace(x=xb)
    Refuse(monkeypatch, gl.density)
    out = gl(batch)
    monkeypatch.undo()
    assert torch.isfinite(out.y).all()
    assert torch.equal(out.y[[2, 4]], batch.y_mix[[2, 4]])
    assert int(out.info["genlabel"]["fallback"]) == 2
    y_gen, dead = gl.posterior(xb)
    assert dead.tolist() == [False, False, True, False, True, False]
    assert torch.isfinite(y_gen).all()  # rows that cannot say are uniform, not NaN
    torch.testing.assert_close(y_gen[2], torch.full((K,), 1 / K))


@pytest.mark.cuda
def test_mixup_genlabel_on_cuda_never_syncs():
    gl, x, y = fitted()
    gl.validate = None
    mix = mixkit.Mixup(num_classes=K, seed=0)
    xc, yc = x[:128].cuda(), y[:128].cuda()
    expected = gl(mix(x[:128], y[:128], lam=0.3)).y
    gl(mix(xc, yc))  # the density follows the batch to the GPU once (a copy that syncs)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            out = gl(mix(xc, yc))
        fixed = gl(mix(xc, yc, lam=0.3))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert out.y.is_cuda and torch.isfinite(out.y).all()
    assert gl.stats()["calls"] == 6  # the read-back happens here, outside the loop
    # same permutation draws on both devices? not guaranteed: compare the fixed-lam rows' sums
    torch.testing.assert_close(fixed.y.sum(1).cpu(), torch.ones(128))
    assert expected.shape == fixed.y.shape


@pytest.mark.parametrize("rows", [64, 1024])
@pytest.mark.parametrize("fused", [False, True])  # the CPU path and the accelerators' one
@pytest.mark.parametrize("temperature", [1.0, 0.3, 1e-300, 1e300])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_class_softmax_against_torch_softmax_over_rows(temperature, dtype, fused, rows):
    """The class-major softmax equals torch.softmax over (B, K) rows in float64 (the oracle),
    gives exact zeros to -inf classes and the one-hot label at a tiny temperature, comes out
    NaN exactly on the columns whose density cannot say (dead, NaN, +inf), and (on the CPU)
    holds no denormal number, which would slow every later kernel."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, 7, generator=g, dtype=dtype) * 80
    logits[3, 2:] = -torch.inf
    logits[5] = -torch.inf
    logits[6, 1] = float("nan")
    logits[7, 0] = torch.inf
    y = _class_softmax(logits.T.contiguous(), temperature, dtype, fused=fused).T
    dead = y[:, 0] != y[:, 0]
    assert dead.tolist() == [i in (5, 6, 7) for i in range(rows)]
    if not fused:
        live = y[~dead]
        assert not ((live != 0) & (live.abs() < torch.finfo(dtype).tiny)).any()
    ok = ~dead
    factor = min(max(1.0 / temperature, torch.finfo(dtype).tiny), torch.finfo(dtype).max)
    ref = torch.softmax((logits[ok] - logits[ok].amax(1, keepdim=True)).double() * factor, 1).to(dtype)
    torch.testing.assert_close(y[ok], ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(y[ok].sum(1), torch.ones(rows - 3, dtype=dtype))
    assert (y[3, 2:] == 0).all()
    if temperature == 1e-300:  # the one-hot label of the top class
        assert torch.equal(y[ok], torch.nn.functional.one_hot(logits[ok].argmax(1), 7).to(dtype))


def test_relabel_is_row_major_in_every_configuration():
    # the class-major scoring must not leak into what users get: labels are contiguous rows
    for kw in CONFIGS:
        gl, x, y = fitted(**kw)
        batch = mixkit.Mixup(num_classes=K, seed=1)(x[:64], y[:64])
        out = gl(batch)
        assert out.y.is_contiguous() and out.y.shape == (64, K)
        post, dead = gl.posterior(x[:64])
        assert post.is_contiguous() and dead.shape == (64,)
