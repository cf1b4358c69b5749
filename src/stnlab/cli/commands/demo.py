"""``stnlab demo RUN``: a live page to try a trained run (:mod:`stnlab.demo`, on Gradio).

Draw or upload a digit, or pick a test canvas (with clutter added if you like), and see the
input with each sampling grid, each transformer's output, the predicted class with its
probabilities and what θ does. The page is served on 127.0.0.1 (this machine only) unless
``--host`` or ``--share`` says otherwise. Gradio is the optional extra ``stnlab[demo]``.
"""

from __future__ import annotations

import argparse
import sys

HELP = "start a live page to try a trained run: draw, upload or pick a digit (stnlab[demo])"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN", help="a directory written by `stnlab train`")
    p.add_argument(
        "--data",
        metavar="PATH.npz",
        help="data file whose test canvases the page offers and cuts clutter from (default: "
        "the run's own data, generated again or fetched; without any, the page still takes "
        "drawings and uploads)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0: every "
        "machine that can reach this one)",
    )
    p.add_argument(
        "--port", type=int, default=None, help="port to serve on (default: 7860 or the next free)"
    )
    p.add_argument(
        "--share",
        action="store_true",
        help="also open a public gradio.live link, for 72 hours: anyone with it can use the "
        "page (needs the internet)",
    )


def run(args: argparse.Namespace) -> int:
    from stnlab import demo, models
    from stnlab.config.errors import DataError

    demo.require_gradio()  # before anything slow: one line naming the extra if it is missing
    model = models.load(args.run_dir)
    try:
        x, y, where = demo.canvases_of(args.run_dir, args.data)
    except DataError as exc:
        if args.data is not None:
            raise
        print(f"no test canvases ({exc}): the page takes drawings and uploads only")
        x = y = None
    else:
        print(f"test canvases: {len(x)} from {where}")
    name = f"stnlab demo: {args.run_dir} ({model.config.name}, {model.config.transform})"
    app = demo.build_app(demo.Demo(model, x, y), title=name)
    local, public = demo.launch(app, args.host, args.port, args.share)
    print(f"{name} on {local}")
    if public:
        print(f"public link: {public} (anyone with it can use the page)")
    elif args.host in _LOOPBACK:
        print(
            "only this machine can open it: --host 0.0.0.0 serves your network, "
            "--share also makes a public gradio.live link"
        )
    else:
        print(f"serving on {args.host}: any machine that reaches it can open the page")
    print("Ctrl-C stops it")
    sys.stdout.flush()
    app.block_thread()
    return 0
