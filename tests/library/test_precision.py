"""Mixed precision: the layer and every registered model under CPU autocast, bf16 and fp16.

CPU autocast stands in for CUDA's AMP path, which CI cannot run: both cast the same
matmuls to low precision. The rule under test is stated in stnlab.precision.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import perturb, transformers_of
from torch import nn

from stnlab import SpatialTransformer, SpatialTransformer3d, models, sample
from stnlab import transforms as T
from stnlab.precision import work_dtype

LOW = [torch.bfloat16, torch.float16]
# bfloat16 keeps 8 significant bits (relative step 2^-8): after a few layers of a small
# net the outputs agree with float32 to a few percent of their scale. Gradients of the
# small (cancelling) sums in the localization nets agree in direction only: measured
# cosines with float32 were 0.95-1.0 here, and 0.98 for a plain CNN's input gradient.
TOLERANCE = 0.05
COSINE = 0.9


@pytest.fixture
def grid_sample_calls(monkeypatch) -> list[tuple[torch.dtype, torch.dtype]]:
    """Record the (input, grid) dtypes of every grid_sample call (the real one runs)."""
    calls, real = [], F.grid_sample

    def recording(input, grid, *args, **kwargs):
        calls.append((input.dtype, grid.dtype))
        return real(input, grid, *args, **kwargs)

    monkeypatch.setattr(F, "grid_sample", recording)
    return calls


def close_in_scale(low: torch.Tensor, reference: torch.Tensor) -> bool:
    """Whether every entry of ``low`` is within TOLERANCE of the reference's largest one."""
    scale = reference.abs().max()
    return bool((low.float() - reference).abs().max() <= TOLERANCE * scale)


def same_direction(low, reference) -> bool:
    """Whether two lists of gradients, flattened into vectors, have cosine ≥ COSINE."""
    a, b = (torch.cat([g.flatten().float() for g in gs]) for gs in (low, reference))
    return bool(F.cosine_similarity(a, b, dim=0) >= COSINE)


def test_samplers_and_grids_run_on_meta_tensors():
    # Where autocast does not exist (meta tensors, used for shape inference) there is
    # nothing to turn off, and shapes still come out.
    U = torch.empty(2, 3, 5, 6, device="meta")
    theta = torch.empty(2, 6, device="meta")
    grid = T.get("affine").grid(theta, (4, 4))
    assert grid.shape == (2, 4, 4, 2) and grid.device.type == "meta"
    assert sample(U, grid).shape == (2, 3, 4, 4)


def test_work_dtype():
    assert work_dtype(torch.bfloat16) == work_dtype(torch.float16) == torch.float32
    assert work_dtype(torch.float32) == torch.float32
    assert work_dtype(torch.float64) == torch.float64


# --------------------------------------------------------------------------- the registered models


@pytest.mark.parametrize("dtype", LOW, ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", models.names())
def test_model_under_autocast(name, dtype, grid_sample_calls):
    torch.manual_seed(0)
    model = models.create(name).eval()  # eval: no dropout, so both runs see one net
    perturb(model)
    x, y = torch.rand(8, 1, 40, 40), torch.randint(0, 10, (8,))
    stages = transformers_of(model).values()
    in_st = {id(p) for st in stages for p in st.parameters()}
    logits, grads, located = {}, {}, {}
    for low in (False, True):
        model.zero_grad(set_to_none=True)
        grid_sample_calls.clear()
        with torch.autocast("cpu", dtype=dtype, enabled=low):
            logits[low] = model(x)
            loss = F.cross_entropy(logits[low].float(), y)
        loss.backward()
        grads[low] = [p.grad for p in model.parameters()]
        located[low] = [p.grad for p in model.parameters() if id(p) in in_st]
    # Forward: every warp sampled in float32 at a float32 grid (cnn has none), θ float32,
    # and the logits agree with float32's.
    assert len(grid_sample_calls) >= len(stages)
    assert set(grid_sample_calls) <= {(torch.float32, torch.float32)}
    assert all(st.last_theta.dtype == torch.float32 for st in stages)
    assert torch.isfinite(logits[True]).all()
    assert close_in_scale(logits[True], logits[False])
    # Backward: finite float32 gradients (master weights stay float32) in the same direction.
    for g in grads[True]:
        assert g is not None and torch.isfinite(g).all() and g.dtype == torch.float32
    assert same_direction(grads[True], grads[False])
    if located[True]:  # the transformers' parameters: localization nets and regressors
        assert same_direction(located[True], located[False])


# --------------------------------------------------------------------------- the layer


LAYERS = {
    "2d": (lambda: SpatialTransformer(3, 16, out_size=12), (2, 3, 16, 16)),
    "3d": (lambda: SpatialTransformer3d(2, 8, out_size=6), (2, 2, 8, 8, 8)),
}


@pytest.mark.parametrize("dtype", LOW, ids=["bf16", "fp16"])
@pytest.mark.parametrize("case", LAYERS)
def test_layer_under_autocast(case, dtype, grid_sample_calls):
    build, shape = LAYERS[case]
    torch.manual_seed(2)
    stn = build()
    perturb(stn, 0.2)
    x = torch.rand(shape, requires_grad=True)
    reference = stn(x)
    reference.square().sum().backward()
    reference_grad, x.grad = x.grad, None
    grid_sample_calls.clear()
    with torch.autocast("cpu", dtype=dtype):
        V = stn(x)
    assert V.dtype == torch.float32  # the input's dtype (see stnlab.precision)
    assert grid_sample_calls == [(torch.float32, torch.float32)]
    assert stn.last_theta.dtype == torch.float32
    assert close_in_scale(V, reference)
    V.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert same_direction([x.grad], [reference_grad])
    assert all(torch.isfinite(p.grad).all() for p in stn.parameters())


@pytest.mark.parametrize("dtype", LOW, ids=["bf16", "fp16"])
def test_low_precision_feature_maps_keep_their_dtype(dtype, grid_sample_calls):
    # MSTN's second transformer sees autocast's low-precision feature maps.
    stn = SpatialTransformer(4, 12)
    perturb(stn)
    x = torch.rand(2, 4, 12, 12).to(dtype)
    with torch.autocast("cpu", dtype=dtype):
        V = stn(x)
    assert V.dtype == dtype
    assert grid_sample_calls == [(torch.float32, torch.float32)]
    expected = sample(x.float(), stn.transform.grid(stn.last_theta, 12)).to(dtype)
    torch.testing.assert_close(V, expected, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", LOW, ids=["bf16", "fp16"])
def test_raw_pixel_localization_is_exact_under_autocast(dtype):
    # With no low-precision layer in the localization, nothing may change at all:
    # regressor, θ, grid and sampling all run in float32.
    torch.manual_seed(3)
    stn = SpatialTransformer(1, 10, out_size=7, localization=nn.Sequential())
    perturb(stn, 0.02)
    x = torch.rand(3, 1, 10, 10)
    reference = stn(x)
    with torch.autocast("cpu", dtype=dtype):
        V = stn(x)
    assert torch.equal(V, reference)


@pytest.mark.parametrize("dtype", LOW, ids=["bf16", "fp16"])
@pytest.mark.parametrize("name", ["affine", "attention", "projective", "tps"])
def test_grids_and_composition_keep_their_dtype_under_autocast(name, dtype):
    family = T.get(name)
    theta = family.identity(2) + 0.01 * torch.randn(2, family.num_params)
    reference = family.grid(theta, (9, 11))
    with torch.autocast("cpu", dtype=dtype):
        grid = family.grid(theta, (9, 11))
        composed = family.compose(theta, theta) if hasattr(family, "compose") else theta
    assert grid.dtype == composed.dtype == torch.float32
    torch.testing.assert_close(grid, reference, rtol=0, atol=0)
