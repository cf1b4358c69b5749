"""A 3D spatial transformer learns to undo random rotations of a synthetic volume.

A fixed volume (three blobs of different sizes and brightness, no symmetry) is turned
by a random rotation about a random axis; a :class:`stnlab.SpatialTransformer3d` (the
default localization, a 3×4 affine θ) is trained to warp it back, with the mean squared
difference to the upright volume as the loss. On held-out rotations the script prints
the alignment error before (the rotated input) and after (the transformer's output):

- displacement: the mean distance, in voxels, by which the remaining transform moves the
  volume's voxel centres: the input's own rotation R before; R·θ after (output point p
  reads the upright volume at R (A p + t), so a perfect θ = (A | t) makes R·θ = (I | 0));
- rotation left: the angle of the rotation nearest to the remaining 3×3 part, degrees;
- mse: the mean squared difference to the upright volume.

    python examples/undo_rotations_3d.py --threads 1   # about 2 minutes on one CPU core

(On a CPU shared with other jobs, one thread was 30× faster than two here: OpenMP
threads that wait for a busy core spin.)
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from stnlab import SpatialTransformer3d, sample
from stnlab import transforms as T

AFFINE = T.get("affine", dims=3)


def phantom(size: int) -> torch.Tensor:
    """The upright volume (1, 1, D, H, W): three Gaussian blobs, no rotational symmetry."""
    centres = AFFINE.grid(AFFINE.identity(1), size)[0]  # (D, H, W, 3) normalised (x, y, z)
    blobs = [  # centre (x, y, z), radius, brightness
        ((0.35, 0.0, 0.0), 0.22, 1.0),
        ((-0.2, 0.3, -0.1), 0.15, 0.7),
        ((0.0, -0.15, 0.4), 0.1, 0.5),
    ]
    volume = torch.zeros(centres.shape[:3])
    for centre, radius, brightness in blobs:
        d2 = (centres - torch.tensor(centre)).square().sum(-1)
        volume += brightness * torch.exp(-d2 / (2 * radius**2))
    return volume[None, None]


def random_rotations(n: int, max_angle: float, gen: torch.Generator) -> torch.Tensor:
    """Rotation matrices (N, 3, 3): a uniform random axis, an angle up to ``max_angle`` rad."""
    axis = F.normalize(torch.randn(n, 3, generator=gen), dim=1)
    angle = max_angle * torch.rand(n, 1, 1, generator=gen)
    x, y, z = axis.unbind(1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=1).reshape(n, 3, 3)
    return torch.linalg.matrix_exp(angle * skew)


def rotate(volume: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Each rotated copy of ``volume``: output point p reads the volume at R p."""
    theta = torch.cat([rotation, torch.zeros(len(rotation), 3, 1)], dim=2).reshape(-1, 12)
    grid = AFFINE.grid(theta, volume.shape[2:])  # (N, D, H, W, 3)
    return sample(volume.expand(len(rotation), -1, -1, -1, -1), grid)


def displacement(residual: torch.Tensor, size: int) -> float:
    """Mean distance in voxels that affine maps (N, 3, 4) move the voxel centres by."""
    points = AFFINE.grid(residual.reshape(-1, 12), size).reshape(len(residual), -1, 3)
    centres = AFFINE.grid(AFFINE.identity(1), size).reshape(1, -1, 3)  # (1, P, 3)
    return float((points - centres).norm(dim=-1).mean() * size / 2)  # normalised -> voxels


def evaluate(stn, volume, rotations) -> dict[str, tuple[float, float]]:
    """Alignment error (before, after) on held-out rotations."""
    size = volume.shape[-1]
    stn.eval()
    with torch.no_grad():
        turned = rotate(volume, rotations)
        out = stn(turned)
        theta = stn.last_theta.reshape(-1, 3, 4)  # (N, 3, 4): (A | t)
    before = torch.cat([rotations, torch.zeros(len(rotations), 3, 1)], dim=2)  # (R | 0)
    after = rotations @ theta  # (R A | R t)
    upright = volume.expand_as(turned)
    return {
        "displacement (voxels)": (displacement(before, size), displacement(after, size)),
        "rotation left (deg)": (angle_of(rotations), angle_of(after[:, :, :3])),
        "mse": (F.mse_loss(turned, upright).item(), F.mse_loss(out, upright).item()),
    }


def angle_of(matrices: torch.Tensor) -> float:
    """Mean rotation angle (degrees) of the nearest rotations to (N, 3, 3) matrices."""
    u, _, vh = torch.linalg.svd(matrices)
    nearest = u @ vh
    cos = ((nearest.diagonal(dim1=1, dim2=2).sum(-1) - 1) / 2).clamp(-1, 1)
    return float(torch.rad2deg(torch.arccos(cos)).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=24, help="side of the cubic volume")
    parser.add_argument("--steps", type=int, default=1000, help="training steps")
    parser.add_argument("--batch", type=int, default=16, help="rotations per step")
    parser.add_argument("--max-angle", type=float, default=45.0, help="largest angle, degrees")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    max_angle = math.radians(args.max_angle)
    volume = phantom(args.size)
    held_out = random_rotations(64, max_angle, torch.Generator().manual_seed(10_000 + args.seed))
    stn = SpatialTransformer3d(1, args.size)
    optimizer = torch.optim.Adam(stn.parameters(), lr=args.lr)
    start = time.perf_counter()
    for _ in (bar := tqdm(range(args.steps), desc="training", unit="step")):
        stn.train()
        turned = rotate(volume, random_rotations(args.batch, max_angle, gen))
        loss = F.mse_loss(stn(turned), volume.expand_as(turned))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(mse=f"{loss.item():.5f}")
    minutes = (time.perf_counter() - start) / 60
    print(f"trained {args.steps} steps in {minutes:.1f} min (threads: {torch.get_num_threads()})")
    print(f"held-out: 64 rotations up to {args.max_angle:g}° of a {args.size}³ volume")
    print(f"{'alignment error':<24}{'before':>10}{'after':>10}")
    for name, (before, after) in evaluate(stn, volume, held_out).items():
        print(f"{name:<24}{before:>10.3g}{after:>10.3g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
