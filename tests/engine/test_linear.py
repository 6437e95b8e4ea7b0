"""engine.linear: oneDNN's product where it applies, F.linear elsewhere, the same numbers
to float rounding."""

import pytest
import torch
import torch.nn.functional as F

from singledir.engine.linear import linear, onednn_linear_available

needs_onednn = pytest.mark.skipif(not onednn_linear_available(), reason="PyTorch built without oneDNN")


def _data(b=300, n_in=257, n_out=130, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, n_in, generator=g).relu(), torch.randn(n_out, n_in, generator=g) / n_in ** 0.5,
            torch.randn(n_out, generator=g))


@pytest.mark.parametrize("n_out", [10, 130, 1024])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_equals_f_linear_to_float_rounding(n_out, with_bias):
    x, w, b = _data(n_out=n_out)
    b = b if with_bias else None
    with torch.no_grad():
        got = linear(x, w, b)
    want = F.linear(x.double(), w.double(), None if b is None else b.double())
    assert got.shape == (300, n_out) and got.dtype == torch.float32 and got.is_contiguous()
    assert (got.double() - want).abs().max().item() < 1e-5


def test_linear_takes_strided_views_and_a_row_bias():
    x, w, b = _data()
    buf = torch.randn(300, 400)
    buf[:, 143:] = x  # a suffix view of a wider buffer, as the engine's chains are
    view = buf[:, 143:]
    assert not view.is_contiguous()
    with torch.no_grad():
        got = linear(view, w, b.view(1, -1))
        ref = linear(x, w, b)
    assert torch.equal(got, ref)


@needs_onednn
def test_linear_uses_onednn_on_the_cpu_and_is_deterministic():
    x, w, b = _data(b=1000, n_in=784, n_out=512)
    with torch.no_grad():
        got = linear(x, w, b)
        again = linear(x, w, b)
    assert torch.equal(got, torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], ""))
    assert torch.equal(got, again)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")
def test_linear_falls_back_to_f_linear_without_onednn_or_with_autograd():
    x, w, b = _data()
    with torch.no_grad(), torch.backends.mkldnn.flags(enabled=False):
        assert torch.equal(linear(x, w, b), F.linear(x, w, b))
    w_req = w.clone().requires_grad_()
    out = linear(x, w_req, b)  # grad mode: the autograd-aware F.linear
    assert torch.equal(out.detach(), F.linear(x, w, b))
    out.sum().backward()
    assert w_req.grad is not None and w_req.grad.shape == w.shape


def test_linear_environment_switch_and_machine_guard(monkeypatch):
    """SINGLEDIR_ONEDNN_LINEAR=0 turns oneDNN off; off x86-64 it is off unless =1."""
    import singledir.engine.linear as lin

    x, w, b = _data()
    monkeypatch.setenv(lin.ENV_SWITCH, "0")
    assert not onednn_linear_available()
    with torch.no_grad():
        assert torch.equal(linear(x, w, b), F.linear(x, w, b))
    monkeypatch.setenv(lin.ENV_SWITCH, "")
    monkeypatch.setattr(lin.platform, "machine", lambda: "arm64")
    assert not onednn_linear_available()
    monkeypatch.setenv(lin.ENV_SWITCH, "1")
    assert onednn_linear_available() == bool(lin._state["onednn"])
