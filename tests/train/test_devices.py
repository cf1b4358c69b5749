"""Tests of stnlab.train.devices: what ``train.amp`` (auto, true, false) resolves to on each
kind of hardware, the capability faked where this machine lacks it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from stnlab.config import ConfigError, TrainConfig
from stnlab.train import devices
from stnlab.train.devices import MixedPrecision

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # a device object needs no GPU
cpu_has_amx = devices.cpu_has_amx  # the detector itself: conftest fakes it in every test


@pytest.fixture
def amx(monkeypatch):
    """``amx(True)``: this CPU has AMX from now on; ``amx(False)``: it has none."""
    return lambda has: monkeypatch.setattr(devices, "cpu_has_amx", lambda: has)


@pytest.mark.parametrize(
    ("device", "has_amx", "amp", "name", "why"),
    [
        (CPU, True, "auto", "bfloat16", "auto: this CPU has AMX, native bfloat16 matrix units"),
        (CPU, False, "auto", "float32", "auto: this CPU has no native bfloat16"),
        (CUDA, True, "auto", "float32", "auto: float32 on CUDA, faster for these small models"),
        (torch.device("meta"), True, "auto", "float32", "auto: float32 on meta"),
        (CPU, False, True, "bfloat16", "forced by train.amp = true"),
        (CPU, True, False, "float32", "forced by train.amp = false"),
    ],
)
def test_amp_resolves_to_each_precision_under_each_capability(amx, device, has_amx, amp, name, why):
    amx(has_amx)
    p = MixedPrecision.of(TrainConfig(amp=amp), device)
    assert (p.name, p.why, p.auto) == (name, why, amp == "auto")
    assert p.enabled == (name != "float32")
    assert p.describe() == f"precision: {name} ({why})"
    assert not p.scaler.is_enabled()  # loss scaling is for float16 only


@pytest.mark.parametrize(("bf16", "dtype"), [(True, torch.bfloat16), (False, torch.float16)])
def test_forced_amp_on_cuda_is_float16_where_the_gpu_lacks_bfloat16(monkeypatch, bf16, dtype):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    with pytest.MonkeyPatch.context() as m:  # GradScaler warns that CUDA is missing here
        m.setattr(torch.amp, "GradScaler", lambda device, enabled: SimpleNamespace(on=enabled))
        p = MixedPrecision.of(TrainConfig(amp=True), CUDA)
    assert p.dtype == dtype and p.name == str(dtype).removeprefix("torch.")
    assert p.scaler.on == (not bf16)


def test_cpu_has_amx_reads_torchs_capabilities(monkeypatch):
    for has in (True, False):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda has=has: {"amx_bf16": has})
        assert cpu_has_amx() is has


def test_cpu_has_amx_falls_back_to_the_kernels_flags(monkeypatch, tmp_path):
    monkeypatch.delattr(torch.cpu, "get_capabilities", raising=False)
    info = tmp_path / "cpuinfo"
    monkeypatch.setattr(devices, "Path", lambda _: info)
    info.write_text("flags\t\t: fpu avx2 amx_bf16 amx_tile\n")
    assert cpu_has_amx()
    info.write_text("flags\t\t: fpu avx2 avx512_bf16\n")
    assert not cpu_has_amx()
    info.unlink()  # no /proc: no AMX known
    assert not cpu_has_amx()


def test_cpu_has_amx_agrees_with_proc_cpuinfo_here():
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        pytest.skip("no /proc/cpuinfo on this machine")
    assert cpu_has_amx() == ("amx_bf16" in info.read_text().split())


@pytest.mark.parametrize(("has_amx", "recorded"), [(True, False), (False, True)])
def test_a_resumed_run_keeps_its_recorded_precision_and_says_what_it_costs(amx, has_amx, recorded):
    amx(has_amx)
    auto = MixedPrecision.of(TrainConfig(), CPU)
    kept = auto.resumed(recorded, CPU)
    assert kept.enabled is recorded and kept.kept
    here = "bfloat16" if has_amx else "float32"
    assert kept.describe().startswith(
        f"precision: {kept.name} (recorded by the run; a new run here would train in {here}, "
    )
    assert auto.resumed(not recorded, CPU) is auto  # recorded as auto chooses: no note


def test_a_forced_other_precision_cannot_resume(amx):
    amx(False)
    with pytest.raises(ConfigError, match=r"trained in bfloat16, and train.amp false \(--no-amp"):
        MixedPrecision.of(TrainConfig(amp=False), CPU).resumed(True, CPU)
    forced = MixedPrecision.of(TrainConfig(amp=True), CPU)
    assert forced.resumed(True, CPU) is forced


def test_describe_precision_resolves_the_device(amx):
    amx(True)
    line = devices.describe_precision(TrainConfig(device="cpu"))
    assert line == "precision: bfloat16 (auto: this CPU has AMX, native bfloat16 matrix units)"
