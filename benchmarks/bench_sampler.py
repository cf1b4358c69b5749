"""Forward+backward time of stnlab.sample vs raw grid_sample vs the literal sampling equation.

Prints one row per (case, method), images and volumes: the median milliseconds of a
forward and backward pass (gradients w.r.t. both U and the grid) over ``runs`` runs and
the ratio to raw ``grid_sample``. No assertions on time; the goal line says whether
``sample`` is within 1.2x. The literal equation costs O(input voxels) per output voxel,
so on the volume it runs once (``--volume-reference-repeats``).

    python benchmarks/bench_sampler.py --repeats 30 --device auto
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from stnlab import sample, sample_reference

CASES = {  # name -> (N, C, H, W) or (N, C, D, H, W); the output has the input's size
    "200x1x40x40": (200, 1, 40, 40),
    "200x16x20x20": (200, 16, 20, 20),
    "16x1x32x32x32": (16, 1, 32, 32, 32),
}
GOAL = 1.2


def grid_sample(U: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Raw PyTorch, the baseline ``sample`` wraps."""
    return F.grid_sample(U, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


METHODS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "grid_sample": grid_sample,
    "sample": sample,
    "sample_reference": sample_reference,
}


def make_inputs(shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Random images or volumes, a random affine grid near the identity, an upstream gradient."""
    n, d = shape[0], len(shape) - 2
    gen = torch.Generator().manual_seed(0)
    U = torch.rand(shape, generator=gen).to(device).requires_grad_()
    theta = torch.eye(d, d + 1).expand(n, d, d + 1) + 0.1 * torch.randn(n, d, d + 1, generator=gen)
    grid = F.affine_grid(theta, list(shape), align_corners=False).to(device).requires_grad_()
    upstream = torch.randn(shape, generator=gen).to(device)
    return U, grid, upstream


def time_ms(
    fns: dict[str, Callable[[], None]], repeats: int, warmup: int, device: torch.device
) -> dict[str, tuple[float, int]]:
    """Median wall time of each function in milliseconds, and the number of runs.

    The functions take turns within every repeat, so drift in the machine's speed
    (other load, clocks) hits all of them alike and cancels out of the ratios.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    sync()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            sync()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: (statistics.median(t), len(t)) for name, t in times.items()}


def bench_case(shape, device, repeats: int, reference_repeats: int) -> dict[str, tuple]:
    U, grid, upstream = make_inputs(shape, device)

    def step(method):
        return lambda: torch.autograd.grad(method(U, grid), (U, grid), upstream)

    fast = {name: step(METHODS[name]) for name in ("grid_sample", "sample")}
    results = time_ms(fast, repeats, warmup=3, device=device)
    slow = {"sample_reference": step(sample_reference)}
    results |= time_ms(slow, reference_repeats, warmup=1, device=device)
    return results


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed runs per method")
    parser.add_argument(
        "--reference-repeats", type=int, default=5, help="timed runs of the slow reference"
    )
    parser.add_argument(
        "--volume-reference-repeats",
        type=int,
        default=1,
        help="timed runs of the slow reference on the volume",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {where}  torch {torch.__version__}  threads {torch.get_num_threads()}")
    print("forward+backward (grads w.r.t. U and grid), median of `runs` runs")
    print(f"{'case':<15} {'method':<17} {'runs':>5} {'ms':>10} {'x grid_sample':>14}")
    worst = 0.0
    for case, shape in CASES.items():
        volume = len(shape) == 5
        slow = args.volume_reference_repeats if volume else args.reference_repeats
        results = bench_case(shape, device, args.repeats, slow)
        base = results["grid_sample"][0]
        for name, (ms, runs) in results.items():
            print(f"{case:<15} {name:<17} {runs:>5} {ms:>10.3f} {ms / base:>14.2f}")
        worst = max(worst, results["sample"][0] / base)
    verdict = "PASS" if worst <= GOAL else "MISS"
    print(f"goal: sample <= {GOAL}x grid_sample: {verdict} (worst {worst:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
