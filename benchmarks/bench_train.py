"""Training speed: images per second of cnn, stn and mstn at batch 200, eager and compiled.

Times the training step of :mod:`stnlab.train.loop` (on-device batch gather, forward,
cross-entropy, backward, Adam) for each model × size preset and prints a table. The
"plain" column is a textbook eager loop (default Adam, NCHW, a ``.item()`` each step)
for reference; "eager" is the stnlab step (fused Adam, channels_last); "compiled" adds
``torch.compile`` (its compile time is reported apart, not counted in the rate); "amp" is
the eager step under bfloat16 autocast (``stnlab train --amp``); "auto" is the eager step
in the precision that ``train.amp = "auto"``, the default, chooses on this machine
(bfloat16 on CPUs with AMX, else float32; the script prints which); "batched" trains
``--stack`` copies of the design (a design's seeds) as one model, ``torch.func.vmap`` over
their stacked weights, and counts the images of all copies: batching pays where it beats
"eager". It runs BatchNorm without running statistics and leaves θ unchecked (vmap allows
neither), so it times the step only.

    python benchmarks/bench_train.py                    # plain, eager, auto, compiled; 2 threads
    python benchmarks/bench_train.py --models stn --sizes tf-example --modes eager compiled
    python benchmarks/bench_train.py --modes eager amp auto --threads 1 --clock cpu
    python benchmarks/bench_train.py --device cuda --modes plain eager amp auto --steps 50
    python benchmarks/bench_train.py --models stn --sizes default --backbones none timm:resnet10t
    python benchmarks/bench_train.py --modes eager batched --stack 3 --device cuda

Figures on a shared machine are noisy: compare columns of one run, not runs; with
``--threads 1 --clock cpu`` the rate counts this process's CPU time only.
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
import torch.nn.functional as F

from stnlab import models
from stnlab.config import TrainConfig
from stnlab.train.devices import MixedPrecision
from stnlab.train.loop import _optimizer

MODES = ("plain", "eager", "amp", "auto", "compiled", "batched")
DEFAULT_MODES = ("plain", "eager", "auto", "compiled")  # amp: ask (very slow without AMX)


def precision_of(mode: str, device: torch.device) -> MixedPrecision:
    """The autocast of a mode: ``amp`` forced on, ``auto`` as stnlab chooses, else off."""
    amp = {"amp": True, "auto": "auto"}.get(mode, False)
    return MixedPrecision.of(TrainConfig(amp=amp), device)


def make_step(model, mode: str, x, y, batch: int):
    """A closure running one training step on a fresh random batch of the in-memory set."""
    if mode == "plain":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        net = model
    else:  # as stnlab.train.loop does: fused Adam, channels_last weights and data
        opt = _optimizer(model, TrainConfig())
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
        net = torch.compile(model) if mode == "compiled" else model
    g = torch.Generator(x.device).manual_seed(0)
    p = precision_of(mode, x.device)
    amp = torch.autocast(x.device.type, dtype=p.dtype, enabled=p.enabled)

    def step():
        idx = torch.randint(len(x), (batch,), generator=g, device=x.device)
        xb, yb = x[idx], y[idx]
        with amp:
            loss = F.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if mode == "plain":
            loss.item()  # what a loop that logs every step pays

    return step


def make_batched_step(copies: list[torch.nn.Module], x, y, batch: int):
    """A closure training the copies as one model: one vmapped gradient, one fused Adam."""
    for model in copies:
        torch.func.replace_all_batch_norm_modules_(model)
        for module in model.modules():
            if hasattr(module, "check_finite"):
                module.check_finite = False
    params, buffers = torch.func.stack_module_state(copies)
    stacks = list(params.values())
    opt = torch.optim.Adam(stacks, lr=1e-3, fused=True)
    base = copies[0]

    def loss_of(p, b, xb, yb):
        return F.cross_entropy(torch.func.functional_call(base, (p, b), (xb,)), yb)

    grads_of = torch.func.vmap(torch.func.grad(loss_of), randomness="different")
    g = torch.Generator(x.device).manual_seed(0)

    def step():
        idx = torch.randint(len(x), (len(copies), batch), generator=g, device=x.device)
        grads = grads_of(params, buffers, x[idx], y[idx])
        for stack, name in zip(stacks, params, strict=True):
            stack.grad = grads[name]
        opt.step()

    return step


def create(name: str, size: str, backbone: str) -> torch.nn.Module:
    """The model of a row: a design at a size, or with a backbone (``none``: its own CNN)."""
    return models.create(name, size=size, backbone="" if backbone == "none" else backbone)


def measure(name: str, size: str, backbone: str, mode: str, args) -> tuple[float, float]:
    """(images per second, seconds of warm-up including any compilation)."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    x = torch.rand(2000, 1, 40, 40, device=device)
    y = torch.randint(0, 10, (2000,), device=device)
    count = args.stack if mode == "batched" else 1
    copies = [create(name, size, backbone).train().to(device) for _ in range(count)]
    if mode == "batched":
        step, images = make_batched_step(copies, x, y, args.batch), args.stack * args.batch
    else:
        step, images = make_step(copies[0], mode, x, y, args.batch), args.batch
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync()
    warm = time.perf_counter() - t0
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    best = 0.0
    for _ in range(args.repeats):  # the best of a few: the least disturbed by other processes
        t0 = clock()
        for _ in range(args.steps):
            step()
        sync()
        best = max(best, args.steps * images / (clock() - t0))
    return best, warm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["cnn", "stn", "mstn"])
    p.add_argument("--sizes", nargs="+", default=["default", "tf-example"])
    p.add_argument("--modes", nargs="+", default=list(DEFAULT_MODES), choices=MODES)
    p.add_argument(
        "--backbones",
        nargs="+",
        default=["none"],
        help="none (the design's own CNN) or LIB:NAME as for --backbone (stnlab[backbones])",
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--stack", type=int, default=3, help="copies trained as one in 'batched'")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: images per CPU-second, steadier on a busy machine",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"torch {torch.__version__} on {where}, {torch.get_num_threads()} threads, "
        f"batch {args.batch}, "
        f"images per {args.clock} second"
    )
    if "auto" in args.modes:
        auto = precision_of("auto", torch.device(args.device))
        print(f"auto trains in {auto.name} here ({auto.why})")
    head = f"{'model':<6}{'size':<12}{'backbone':<18}{'params':>10}"
    head += "".join(f"{m + ' img/s':>16}" for m in args.modes)
    head += f"{'compile s':>11}" if "compiled" in args.modes else ""
    print(head)
    for size, backbone, name in itertools.product(args.sizes, args.backbones, args.models):
        params = models.count_parameters(create(name, size, backbone))
        row, compile_s = f"{name:<6}{size:<12}{backbone:<18}{params:>10,}", None
        for mode in args.modes:
            rate, warm = measure(name, size, backbone, mode, args)
            row += f"{rate:>16,.0f}"
            if mode == "compiled":
                compile_s = warm
        if compile_s is not None:
            row += f"{compile_s:>11.1f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
