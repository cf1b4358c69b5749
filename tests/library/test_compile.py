"""torch.compile(fullgraph=True) of the layer (2D and 3D) and of every registered model.

``fullgraph=True`` makes any graph break an error. The default run compiles with the
``aot_eager`` backend: Dynamo's whole-graph capture plus AOTAutograd's forward and
backward graphs, which is where a layer would break, without Inductor's C++ build.
The ``slow`` tests add Inductor itself; its builds took 1-2 minutes per model on a
2-core CPU, so they run only with ``STNLAB_SLOW=1`` (``make test`` does not deselect
markers).
"""

from __future__ import annotations

import os

import pytest
import torch
from conftest import perturb
from torch import nn

from stnlab import SpatialTransformer, SpatialTransformer3d, models

inductor = pytest.mark.skipif(
    os.environ.get("STNLAB_SLOW") != "1", reason="Inductor builds take minutes: STNLAB_SLOW=1"
)

LAYERS = {
    "2d": (lambda: SpatialTransformer(2, 16, out_size=12), (3, 2, 16, 16)),
    "3d": (lambda: SpatialTransformer3d(1, 8, out_size=(4, 6, 6)), (3, 1, 8, 8, 8)),
}


def check_compiled(model: nn.Module, x: torch.Tensor, backend: str) -> None:
    """The compiled model's output and gradients equal the eager model's."""
    perturb(model)
    model.eval()  # no dropout: both runs see one net
    eager = model(x)
    eager.square().sum().backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    out = compiled(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-5)
    for p, g in zip(model.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("case", LAYERS)
def test_layer_compiles_to_one_graph(case):
    build, shape = LAYERS[case]
    torch.manual_seed(0)
    stn = build()
    check_compiled(stn, torch.rand(shape), "aot_eager")
    assert stn.last_theta.shape == (shape[0], stn.transform.num_params)


@pytest.mark.parametrize("name", models.names())
def test_model_compiles_to_one_graph(name):
    torch.manual_seed(0)
    check_compiled(models.create(name), torch.rand(2, 1, 40, 40), "aot_eager")


@pytest.mark.slow
@inductor
@pytest.mark.parametrize("case", LAYERS)
def test_layer_compiles_with_inductor(case):
    build, shape = LAYERS[case]
    torch.manual_seed(0)
    check_compiled(build(), torch.rand(shape), "inductor")


@pytest.mark.slow
@inductor
@pytest.mark.parametrize("name", models.names())
def test_model_compiles_with_inductor(name):
    torch.manual_seed(0)
    check_compiled(models.create(name), torch.rand(2, 1, 40, 40), "inductor")
