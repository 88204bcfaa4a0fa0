"""`napari-dgno demo`: see DGNO work in one command, in napari or headless.

With a display, napari opens with the simulated defocus z-stack, the DGNO widget docked and the demo
model selected. ``--headless`` (automatic without a display) deblurs the same stack through the
engine instead and writes ``deblurred.tif`` (with provenance), ``side_by_side.png`` (input | DGNO |
in-focus reference of one field) and prints per-plane focus and PSNR/SSIM against the in-focus plane.
Everything is simulated offline by :mod:`napari_dgno.synthetic`; the bundled demo model needs no
download.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ._progress import ProgressBar

#: The plane shown side by side: this many planes (µm) above the in-focus one.
DEFAULT_DEFOCUS_PLANES = 3


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="deblur a simulated defocus z-stack: in napari, or --headless to files",
        description="Open napari with a simulated defocus z-stack, the DGNO widget docked and the demo model "
        "selected. With --headless (automatic when there is no display) deblur the stack without a GUI and "
        "write OUT/deblurred.tif and OUT/side_by_side.png, and print per-plane focus and PSNR.",
    )
    parser.add_argument("--headless", action="store_true", help="no GUI: write files and print a summary")
    parser.add_argument("--out", type=Path, default=Path("dgno-demo"), metavar="DIR",
                        help="folder for the headless outputs (default: ./dgno-demo)")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    parser.add_argument("--model", default="demo", metavar="NAME|PATH",
                        help="model to use instead of the bundled demo: a registry name or a checkpoint path")
    parser.add_argument("--plane", type=int, default=None, metavar="N",
                        help="plane shown in side_by_side.png (default: 3 µm above the in-focus plane)")
    parser.add_argument("--planes", type=int, default=None, metavar="N",
                        help="headless: deblur only N consecutive planes around the shown one, for a quick look on "
                        "a slow CPU (default: all 21)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def has_display() -> bool:
    """Whether a GUI can open: on Linux and other X11/Wayland systems only when DISPLAY or WAYLAND_DISPLAY is set."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _fail(message: str, code: int = 1) -> int:
    print(f"napari-dgno demo: error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    headless = args.headless or not has_display()
    if headless and not args.headless:
        print("napari-dgno demo: no display (DISPLAY and WAYLAND_DISPLAY are unset), running headless; "
              "pass --headless to silence this", file=sys.stderr)
    if headless:
        return run_headless(args)
    return run_gui(args)


# ------------------------------------------------------------------------------------------ GUI


def run_gui(args: argparse.Namespace) -> int:
    """napari with the sample stack, the widget docked and the model selected; returns when it closes."""
    try:
        import napari
    except ImportError as err:
        return _fail(f"napari with a Qt binding is needed for the GUI demo ({err}); install it with "
                     "pip install 'napari-dgno[gui]', or run `napari-dgno demo --headless`")
    from ..synthetic import sample_stack

    _, meta = sample_stack()
    viewer = napari.Viewer(title="napari-dgno demo")
    viewer.open_sample("napari-dgno", "defocus_stack")
    viewer.dims.set_current_step(0, _shown_plane(args, meta))
    _, widget = viewer.window.add_plugin_dock_widget("napari-dgno", "DGNO deblur")
    try:
        widget.select_model(args.model)
        if args.device != "auto":
            widget.set_device(args.device)
    except ValueError as err:
        print(f"napari-dgno demo: {err}", file=sys.stderr)
    if widget.problems.get("model"):
        print(f"napari-dgno demo: {widget.problems['model']}", file=sys.stderr)
    napari.run()
    return 0


# ------------------------------------------------------------------------------------- headless


def _shown_plane(args: argparse.Namespace, meta: dict) -> int:
    planes = len(meta["defocus_um"])
    plane = args.plane if args.plane is not None else meta["in_focus"] + DEFAULT_DEFOCUS_PLANES
    return min(max(int(plane), 0), planes - 1)


def _plane_range(args: argparse.Namespace, meta: dict) -> range:
    """The planes to deblur: all, or ``--planes`` consecutive ones centred on the shown plane."""
    total = len(meta["defocus_um"])
    count = total if args.planes is None else min(max(int(args.planes), 1), total)
    start = min(max(_shown_plane(args, meta) - count // 2, 0), total - count)
    return range(start, start + count)


def side_by_side(path: Path, panels: list[tuple[Any, str]], title: str) -> Path:
    """A PNG of 2-D images next to each other, on one intensity scale (the last panel's, the reference)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import numpy as np

    lo, hi = np.percentile(panels[-1][0], (0.5, 99.8))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.9), constrained_layout=True)
    for ax, (image, label) in zip(np.atleast_1d(axes), panels):
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(label, fontsize=11)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=12)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(rows: list[dict], defocus: list[float], model: str) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    header = (f"{'plane':>5} {'defocus':>8} {'focus in':>10} {'focus ' + model[:10]:>17} "
              f"{'PSNR in':>8} {'PSNR out':>8} {'SSIM in':>7} {'SSIM out':>8}")
    lines = [header, "-" * len(header)]
    for row, dz in zip(rows, defocus):
        lines.append(
            f"{row['plane']:>5} {dz:>+7.1f}µ {num(row['focus_input'], '10.3g')} {num(row['focus_result'], '17.3g')} "
            f"{num(row['psnr_input'], '8.2f')} {num(row['psnr_result'], '8.2f')} "
            f"{num(row['ssim_input'], '7.3f')} {num(row['ssim_result'], '8.3f')}"
        )
    return "\n".join(lines)


def _unit_range(planes: Any, like: Any | None = None) -> np.ndarray:
    """Planes mapped to [0, 1] by the min and max of ``like`` (default: their own), clipped.

    The paper's BBBC006 protocol: input and ground truth are each min-max normalised, the network's
    output is clamped to [0, 1]. A result in input units is brought back to the network's scale with
    its *input* plane's min and max, not re-stretched by its own.
    """
    x = np.asarray(planes, dtype=np.float32)
    ref = x if like is None else np.asarray(like, dtype=np.float32)
    lo = ref.min(axis=(-2, -1), keepdims=True)
    span = np.maximum(ref.max(axis=(-2, -1), keepdims=True) - lo, 1e-8)
    return np.clip((x - lo) / span, 0.0, 1.0)


def _scores(inputs: Any, result: Any, reference: Any, planes: range) -> list[dict]:
    """Per plane: focus of input and result, PSNR/SSIM of both against the ``reference`` image."""
    from ..focus import focus_curve, reference_scores

    focus_in, focus_out = focus_curve(inputs), focus_curve(result)
    ref = _unit_range(reference)
    before = reference_scores(_unit_range(inputs), ref, data_range=1.0)
    after = reference_scores(_unit_range(result, like=inputs), ref, data_range=1.0)
    return [
        {"plane": plane, "focus_input": focus_in[i], "focus_result": focus_out[i], "psnr_input": before["psnr"][i],
         "psnr_result": after["psnr"][i], "ssim_input": before["ssim"][i], "ssim_result": after["ssim"][i]}
        for i, plane in enumerate(planes)
    ]


def run_headless(args: argparse.Namespace) -> int:
    """Deblur the sample stack with the engine; write the TIFF and the PNG; print the summary."""
    from ..checkpoints import load_model
    from ..engine import Cancelled, deblur, provenance
    from ..io import write_image
    from ..synthetic import sample_stack, sample_stack_truth

    out: Path = args.out.expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return _fail(f"cannot create the output folder {out} ({err})")
    stack, meta = sample_stack()
    try:
        model = load_model(args.model, device=args.device)
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        hint = "" if args.model != "demo" else (
            "\nThe demo needs the bundled demo weights; use an official model instead with "
            "--model DGNO_BBBC006_w1_Face (downloads ~52 MB once)"
        )
        return _fail(f"{err}{hint}")
    name = model.info.name
    planes = _plane_range(args, meta)
    params = {"axes": "ZYX", "tile": None, "overlap": 32, "batch_size": None, "device": args.device,
              "precision": "fp32"}
    bar = ProgressBar("deblurring", "tile", args.quiet)
    try:
        result = deblur(stack[planes.start:planes.stop], model, progress=bar, **params)
    except (ValueError, RuntimeError, Cancelled) as err:
        return _fail(str(err))
    finally:
        bar.close()
    record = provenance(model, parameters=params, input="napari_dgno.synthetic.sample_stack(rng=0)",
                        input_planes=[planes.start, planes.stop], input_shape=list(stack.shape),
                        input_dtype=str(stack.dtype))
    scale = dict(zip("ZYX", meta["scale"]))
    units = dict(zip("ZYX", meta["units"]))
    tif = write_image(out / "deblurred.tif", result, axes="ZYX", scale=scale, units=units,
                      metadata={"napari_dgno": record}, overwrite=True)

    plane, focus = _shown_plane(args, meta), meta["in_focus"]
    defocus = meta["defocus_um"]
    png = side_by_side(out / "side_by_side.png", [
        (stack[plane], f"input: plane {plane} ({defocus[plane]:+.0f} µm defocus)"),
        (result[plane - planes.start], f"DGNO ({name}): plane {plane}"),
        (stack[focus], f"in-focus reference: plane {focus}"),
    ], title=f"napari-dgno demo: simulated widefield nuclei, {record['device']}")

    # The stack is simulated, so the noise-free in-focus specimen is known: score against it.
    rows = _scores(stack[planes.start:planes.stop], result, sample_stack_truth(), planes)
    print(f"wrote {tif}")
    print(f"wrote {png}")
    print("\nper plane: focus = normalised variance (higher is sharper); PSNR/SSIM against the noise-free "
          "in-focus specimen (known: the stack is simulated), input and truth min-max normalised, the "
          "result on the input's scale, clamped to [0, 1] (the paper's BBBC006 protocol)")
    print(_table(rows, [defocus[i] for i in planes], name))
    return 0
