"""``stnlab export runs/NAME --onnx model.onnx``: a trained model as ONNX, checked."""

from __future__ import annotations

import argparse

from stnlab.config import MIN_OPSET, ONNX_OPSET
from stnlab.config.errors import CommandError
from stnlab.runs.run_folder import WEIGHTS

HELP = "export a trained run to ONNX (checked against PyTorch with onnxruntime)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Attach the export options."""
    parser.add_argument("run", help="run directory (config.json + weights)")
    parser.add_argument("--onnx", required=True, metavar="PATH", help="ONNX file to write")
    parser.add_argument(
        "--opset",
        type=int,
        default=ONNX_OPSET,
        help=f"ONNX opset, >= {MIN_OPSET} (default {ONNX_OPSET})",
    )
    parser.add_argument("--weights", default=WEIGHTS, help="weights file in the run directory")
    parser.add_argument(
        "--no-check", action="store_true", help="skip comparing onnxruntime's output to PyTorch's"
    )


def run(args: argparse.Namespace) -> int:
    """Export, then (unless --no-check) report the largest logit difference."""
    from stnlab import models
    from stnlab.export import check_onnx, check_opset, export_onnx

    check_opset(args.opset)  # before the model is loaded
    model = models.load(args.run, args.weights)
    path = export_onnx(model, args.onnx, opset=args.opset)
    print(f"wrote {path} (opset {args.opset}, {models.count_parameters(model):,} parameters)")
    if args.no_check:
        return 0
    try:
        diff = check_onnx(model, path)
    except ImportError:
        print("onnxruntime is not installed; output not checked (pip install 'stnlab[onnx]')")
        return 0
    if diff > 1e-3:
        raise CommandError(f"onnxruntime's logits differ from PyTorch's by {diff:.2e}")
    print(f"onnxruntime matches PyTorch (max |difference| {diff:.1e})")
    return 0
