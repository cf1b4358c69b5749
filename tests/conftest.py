"""Helpers shared by the test files: tiny data, run folders made through RunDir, CLI checks,
the library's families, grids and perturbed layers; every test starts from the same torch state."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from stnlab import SpatialTransformer, SpatialTransformer3d, cli, models, sample, sample_reference
from stnlab import transforms as T
from stnlab.config import RunConfig
from stnlab.data import make_dataset, save
from stnlab.runs.experiment_folder import ExperimentDir
from stnlab.runs.records import RunSummary
from stnlab.runs.run_folder import RunDir

SMALL = {"size": "small", "in_size": 24}  # keeps every model's forward pass fast
THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def same_torch_state():
    """Each test starts from torch's generator seeded 0 and the session's thread count,
    whatever ran before it (the suite runs in random order): training seeds the generator
    and may set the threads, and a test that draws numbers without seeding would otherwise
    get other ones in every order."""
    torch.manual_seed(0)
    torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True)
def cpu_without_amx(monkeypatch):
    """Each test trains as on a CPU without AMX (``train.amp = "auto"``: float32) wherever
    it runs, so that float32 references hold; tests of the choice fake AMX themselves."""
    from stnlab.train import devices

    monkeypatch.setattr(devices, "cpu_has_amx", lambda: False)


@pytest.fixture(scope="session")
def tiny_data():
    """400/100/100 canvases of the default 40x40 set."""
    return make_dataset(sizes=(400, 100, 100), seed=0)


@pytest.fixture(scope="session")
def data_file(tmp_path_factory, tiny_data) -> Path:
    """``tiny_data`` saved as an .npz file."""
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save(tiny_data, path)
    return path


@pytest.fixture
def fails_with(capsys):
    """``fails_with(argv, message)``: the command exits 2 with one line on stderr holding
    ``message``; returns that line."""

    def check(argv: list[str], message: str) -> str:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err
        assert message in err, err
        return err

    return check


def weights_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def transformers_of(model: torch.nn.Module) -> dict[str, SpatialTransformer | SpatialTransformer3d]:
    """Every spatial transformer inside ``model`` by its name there, in registration order
    (found by type, not by attribute name)."""
    kinds = SpatialTransformer | SpatialTransformer3d
    return {name: m for name, m in model.named_modules() if isinstance(m, kinds)}


def perturb(model: torch.nn.Module, std: float = 0.05, seed: int | None = 1) -> torch.nn.Module:
    """Give the regressors random weights of scale ``std``: at init they are zero, so θ is the
    identity (or the initial zoom) for every input and the localization nets get exactly zero
    gradient. ``seed=None`` draws from torch's generator as the calling test left it."""
    if seed is not None:
        torch.manual_seed(seed)
    for st in transformers_of(model).values():
        torch.nn.init.normal_(st.regressor.weight, std=std)
    return model


def fixed_theta(model: torch.nn.Module, theta: list[float]) -> torch.nn.Module:
    """Make every transformer of ``model`` predict ``theta`` for every input: zero weights,
    ``theta`` as the regressor's bias."""
    for st in transformers_of(model).values():
        with torch.no_grad():
            st.regressor.weight.zero_()
            st.regressor.bias.copy_(torch.tensor(theta))
    return model


def gradcheck_parameters(module: torch.nn.Module, x: torch.Tensor, **kwargs) -> bool:
    """``torch.autograd.gradcheck`` of ``module(x)`` w.r.t. ``x`` and every parameter
    (float64 module and input; ``kwargs`` go to gradcheck, e.g. ``fast_mode=True``)."""
    names = [name for name, _ in module.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in module.parameters())

    def forward(x, *params):
        return functional_call(module, dict(zip(names, params, strict=True)), (x,))

    return torch.autograd.gradcheck(forward, (x.requires_grad_(), *params), **kwargs)


# ------------------------------------------------------------------ the library's families

# Every 2D family, TPS at two control-grid sizes.
FAMILIES = [(name, {}) for name in T.names() if name != "tps"] + [
    ("tps", {"grid_size": 3}),
    ("tps", {"grid_size": 4}),
]
FAMILY_IDS = [name + "".join(f"-{v}" for v in kw.values()) for name, kw in FAMILIES]
MATRIX_FAMILIES = ["affine", "attention", "projective"]  # θ is a matrix (in 2D and 3D)


@pytest.fixture(params=FAMILIES, ids=FAMILY_IDS)
def family(request) -> T.Transform:
    """Each 2D family in turn (tests/library/test_transforms_3d.py has its own for 3D)."""
    name, kwargs = request.param
    return T.get(name, **kwargs)


def perturbed_identity(transform: T.Transform, n: int, scale: float = 0.05) -> torch.Tensor:
    """Random float64 parameters near the identity, (N, num_params)."""
    theta = transform.identity(n, dtype=torch.float64)
    return theta + scale * torch.randn_like(theta)


def random_grid(n: int, *out: int, low: float = -1.6, high: float = 1.6, dtype=torch.float64):
    """Uniform normalised coordinates in [low, high] on every axis, so some fall outside the
    input: (N, H', W', 2) for ``out`` = (H', W'), (N, D', H', W', 3) for (D', H', W')."""
    return low + (high - low) * torch.rand(n, *out, len(out), dtype=dtype)


def grid_off_integers(n: int, out: tuple, size: tuple, *, reach: int = 2) -> torch.Tensor:
    """Random float64 source points ≥ 0.1 pixel (voxel) from every integer coordinate, for an
    input of spatial ``size`` (H, W) or (D, H, W), at output positions ``out``.

    The bilinear (trilinear) kernel has kinks, and the nearest kernel jumps, at integer
    offsets, so gradients w.r.t. the grid are only compared away from them. Coordinates
    range over [-reach, side - 1 + reach] on each axis, outside the input too.
    """
    sides = torch.tensor(size[::-1], dtype=torch.float64)  # (W, H[, D]): x, y[, z]
    shape = (n, *out, len(out))
    whole = torch.floor(torch.rand(shape, dtype=torch.float64) * (sides + 2 * reach - 1))
    frac = 0.1 + 0.8 * torch.rand(shape, dtype=torch.float64)
    pixels = whole - reach + frac  # (N, *out, dims), pixel units
    return (2 * pixels + 1) / sides - 1  # normalised, align_corners=False


def assert_sample_gradients_match_reference(U, grid, upstream, kernel: str, padding: str):
    """``sample`` and ``sample_reference`` give the same gradients w.r.t. the input and the
    grid (``U`` and ``grid`` require grad; ``upstream`` is the output's gradient)."""
    grads = {}
    for sampler in (sample, sample_reference):
        V = sampler(U, grid, kernel, padding)
        # The nearest kernel is piecewise constant: its grid gradient is zero (or absent).
        grads[sampler] = torch.autograd.grad(
            V, (U, grid), upstream, allow_unused=True, materialize_grads=True
        )
    (dU, dgrid), (dU_ref, dgrid_ref) = grads[sample], grads[sample_reference]
    torch.testing.assert_close(dU, dU_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(dgrid, dgrid_ref, rtol=1e-10, atol=1e-10)
    if kernel == "nearest":
        assert torch.count_nonzero(dgrid) == 0
    else:
        assert dgrid.abs().max() > 0.1


def assert_batched_equals_per_sample(f, x: torch.Tensor, atol: float = 1e-12) -> None:
    """``f`` of a batch equals ``f`` of each of its samples alone, concatenated."""
    single = torch.cat([f(x[i : i + 1]) for i in range(len(x))])
    torch.testing.assert_close(f(x), single, rtol=0, atol=atol)


def a_summary(**fields: object) -> RunSummary:
    """A run summary of made-up figures (a finished 9-epoch cnn), with ``fields`` replaced."""
    made_up = dict(
        model="cnn",
        size="small",
        transform="affine",
        epochs=9,
        seed=0,
        valid_accuracy=0.5,
        test_accuracy=0.5,
        valid_loss=1.0,
        test_loss=1.0,
        train_seconds=1.0,
        train_images_per_second=100.0,
        parameters=1000,
        batch_size=10,
        device="cpu",
        world_size=1,
        test_per_class_accuracy=None,
    )
    return RunSummary(**{**made_up, **fields})


def saved_run(folder: Path, model: models.Model) -> Path:
    """A run folder holding ``model``'s config and final weights, as training leaves them."""
    run = RunDir(folder)
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config(RunConfig(model=model.config))
    run.save_weights(model)
    return folder


def records_without_times(run: RunDir) -> list[dict]:
    """metrics.jsonl's records (as JSON data) without the wall-clock fields, which differ
    between runs."""
    return [{k: v for k, v in r.to_dict().items() if "seconds" not in k} for r in run.records()]


def same_results(got: Path, expected: Path) -> None:
    """Two experiment folders hold equal results.csv but for times, and every run's records
    equal epoch by epoch."""
    a, b = ExperimentDir(got), ExperimentDir(expected)

    def rows(folder: ExperimentDir) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in folder.results()]

    assert rows(a) == rows(b) and rows(a)
    for row in b.results():
        assert records_without_times(a.run(row["run"])) == records_without_times(b.run(row["run"]))


@pytest.fixture(scope="session")
def dask_cli(tmp_path_factory):
    """A ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1, started once for
    every test that needs them (tests/dask_cli.py)."""
    pytest.importorskip("distributed")
    if not Path(sys.executable).with_name("dask").is_file():
        pytest.skip("no dask command beside this Python")
    from dask_cli import dask_cli as start

    with start(tmp_path_factory.mktemp("dask-cli")) as cluster:
        yield cluster
