"""Where and in what precision a run computes: the device named by the config, and autocast.

For the CLI and runners (and :func:`stnlab.train.train`, the runner of one run): library code
below them takes the device of the tensors it is given.

``train.amp = "auto"`` (the default) trains in bfloat16 autocast only where the hardware
computes bfloat16 natively *and* that was measured to pay for these small models: CPUs with
AMX matrix units (docs/benchmarks.md). Everywhere else it is float32, CUDA included: there
a step of these networks is bound by kernel launches and autocast's casts made it slower on
an H200, so CUDA stays float32 until bfloat16 is measured faster on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from stnlab.config import ConfigError, TrainConfig

__all__ = [
    "MixedPrecision",
    "auto_amp",
    "cpu_has_amx",
    "describe_precision",
    "resolve_device",
]


def resolve_device(name: str = "auto") -> str:
    """``auto`` → ``cuda`` when available, else ``cpu``; checks that CUDA exists if asked for.

    For the CLI and runners (and :func:`train`, the runner of one run): library code
    below them takes the device of the tensors it is given.
    """
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(name).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"train.device {name!r} asked for, but CUDA is not available here", "train.device"
        )
    return name


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX bfloat16 matrix units (Intel Sapphire Rapids and later)."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # newer torch; else the kernel's
    if capabilities is not None:
        return bool(capabilities().get("amx_bf16", False))
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no AMX known
        return False
    return "amx_bf16" in flags.split()


def auto_amp(device: torch.device) -> tuple[bool, str]:
    """What ``train.amp = "auto"`` chooses on ``device``: (bfloat16 autocast on, why)."""
    if device.type == "cpu":
        if cpu_has_amx():
            return True, "auto: this CPU has AMX, native bfloat16 matrix units"
        return False, "auto: this CPU has no native bfloat16"
    if device.type == "cuda":
        # Launch-bound small nets: autocast measured slower on an H200 (docs/benchmarks.md).
        return False, "auto: float32 on CUDA, faster for these small models"
    return False, f"auto: float32 on {device.type}"


@dataclass
class MixedPrecision:
    """Autocast of a run: bfloat16, or float16 with loss scaling on CUDA without bfloat16.

    ``why`` says how it was chosen; ``kept`` marks a resumed run that keeps its recorded
    precision where ``auto`` would choose the other (and so trains slower than it could).
    """

    enabled: bool
    dtype: torch.dtype
    scaler: torch.amp.GradScaler
    why: str = ""
    auto: bool = False
    kept: bool = False

    @classmethod
    def of(cls, cfg: TrainConfig, device: torch.device) -> MixedPrecision:
        """``cfg.amp`` on ``device``: ``auto`` chooses (:func:`auto_amp`), true or false force."""
        if cfg.amp == "auto":
            return cls.make(*auto_amp(device), device, auto=True)
        forced = f"forced by train.amp = {str(bool(cfg.amp)).lower()}"  # --amp, --no-amp
        return cls.make(bool(cfg.amp), forced, device)

    @classmethod
    def make(
        cls, enabled: bool, why: str, device: torch.device, auto: bool = False
    ) -> MixedPrecision:
        """Autocast on or off on ``device``: float16 with a loss scaler on CUDA without bfloat16."""
        fp16 = enabled and device.type == "cuda" and not torch.cuda.is_bf16_supported()
        dtype = torch.float16 if fp16 else torch.bfloat16
        return cls(enabled, dtype, torch.amp.GradScaler("cuda", enabled=fp16), why, auto)

    @property
    def name(self) -> str:
        """The precision of the run's matmuls and convolutions: float32, bfloat16 or float16."""
        return str(self.dtype).removeprefix("torch.") if self.enabled else "float32"

    def describe(self) -> str:
        """One line: ``precision: float32 (auto: this CPU has no native bfloat16)``."""
        return f"precision: {self.name} ({self.why})"

    def resumed(self, recorded: bool, device: torch.device) -> MixedPrecision:
        """The precision of a run resumed from a checkpoint that trained with autocast
        ``recorded``: ``auto`` keeps the recorded one, a forced other one is refused."""
        if recorded == self.enabled:
            return self
        kept = MixedPrecision.make(recorded, "", device)
        if not self.auto:
            raise ConfigError(
                f"cannot resume: the run trained in {kept.name}, and train.amp "
                f"{str(self.enabled).lower()} (--{'no-' * (not self.enabled)}amp) asks for "
                f"{self.name}; leave it at auto to go on in {kept.name}",
                "train.amp",
            )
        reason = self.why.removeprefix("auto: ")
        kept.why = (
            f"recorded by the run; a new run here would train in {self.name}, faster: {reason}"
        )
        kept.kept = True
        return kept


def describe_precision(cfg: TrainConfig) -> str:
    """The line ``stnlab train`` and ``stnlab experiment`` start with: the precision that a
    new run of ``cfg`` would train in on this machine."""
    return MixedPrecision.of(cfg, torch.device(resolve_device(cfg.device))).describe()
