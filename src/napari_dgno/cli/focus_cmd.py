"""`napari-dgno focus STACK.tif`: per-plane sharpness of a z-stack (and of its DGNO result), as a table.

For every plane: a focus measure of the input and of the result, and PSNR/SSIM of both against a
reference plane (by default the input's best-focused plane). Files are read lazily, a plane at a time.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path
from typing import Any

from ._progress import ProgressBar

PLANE_AXIS = "Z"


def register(subparsers: Any) -> None:
    from ..focus import MEASURES

    parser = subparsers.add_parser(
        "focus",
        help="per-plane focus and PSNR/SSIM of a z-stack, before and after deblurring",
        description="Print, for every plane of a z-stack, a focus measure (higher = sharper) of the input and "
        "of its deblurred result, and PSNR/SSIM of each against a reference plane of the input, plus the "
        "best-focused planes. Reads TIFF/OME-TIFF lazily, one plane at a time.",
    )
    parser.add_argument("stack", metavar="STACK", type=Path, help="the input z-stack (.tif/.tiff/.ome.tif)")
    parser.add_argument("--result", type=Path, default=None, metavar="RESULT",
                        help="the deblurred stack to compare (same shape), e.g. the output of 'napari-dgno deblur'")
    parser.add_argument("--reference-plane", default="auto", metavar="auto|N|none",
                        help="plane of the input that PSNR/SSIM compare against: 'auto' (its best-focused plane, "
                        "the default), a plane number counted from 0, or 'none' for no scores")
    parser.add_argument("--measure", default="normalized_variance", choices=list(MEASURES),
                        help="focus measure (default: normalized_variance)")
    parser.add_argument("--axes", default=None,
                        help="axes of the files, e.g. ZYX, ZCYX, TZYX (default: from the file); planes run along Z")
    parser.add_argument("--channel", type=int, default=None, metavar="N",
                        help="channel to measure when the files have several (counted from 0)")
    parser.add_argument("--time", type=int, default=None, metavar="N",
                        help="time point to measure when the files have several (counted from 0)")
    parser.add_argument("--csv", type=Path, default=None, metavar="OUT.csv", help="also write the table as CSV")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing CSV file")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _fail(message: str, code: int = 2) -> int:
    print(f"napari-dgno focus: error: {message}", file=sys.stderr)
    return code


def _reference(text: str) -> str | int | None:
    value = text.strip().lower()
    if value in ("auto", "none"):
        return None if value == "none" else "auto"
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"--reference-plane must be 'auto', 'none' or a plane number, got {text!r}") from None


def _select(image: Any, axes: str | None, args: argparse.Namespace, label: str) -> tuple[Any, str]:
    """The (Z, Y, X) dask view of ``image`` after choosing a channel/time point; clear errors otherwise."""
    from ..engine.axes import parse_axes

    layout = parse_axes(axes or image.axes, tuple(image.data.shape))
    index: list[Any] = []
    kept = ""
    for letter, size in zip(layout.axes, layout.shape):
        chosen = {"C": args.channel, "T": args.time}.get(letter)
        flag = {"C": "--channel", "T": "--time"}.get(letter)
        if letter in "YX" or (letter == PLANE_AXIS and size > 1):
            index.append(slice(None))
            kept += letter
        elif chosen is not None:
            if not 0 <= chosen < size:
                raise ValueError(f"{flag} {chosen} is out of range: {label} has {letter} = 0 to {size - 1}")
            index.append(chosen)
        elif size == 1:
            index.append(0)
        elif flag:
            raise ValueError(f"{label} has {size} {'channels' if letter == 'C' else 'time points'} (axes "
                             f"{layout.axes}); choose one with {flag} N")
        else:
            raise ValueError(f"{label} has a {letter} axis of {size} (axes {layout.axes}); planes are read along "
                             f"{PLANE_AXIS}: if {letter} is the focus axis, pass e.g. --axes "
                             f"{layout.axes.replace(letter, PLANE_AXIS)}")
    if (args.channel is not None and "C" not in layout.axes) or (args.time is not None and "T" not in layout.axes):
        raise ValueError(f"{label} has no {'C' if args.channel is not None else 'T'} axis (axes {layout.axes})")
    if PLANE_AXIS not in kept:
        raise ValueError(f"{label} is a single 2-D plane (shape {tuple(image.data.shape)}, axes {layout.axes}), "
                         "not a z-stack; focus compares the planes of a stack")
    view = image.data[tuple(index)]
    order = [kept.index(a) for a in (PLANE_AXIS, "Y", "X")]
    return view.transpose(order), layout.axes


def _fmt(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return {"psnr": f"{value:.2f}", "ssim": f"{value:.4f}"}.get(kind, f"{value:#.4g}")


def _table(rows: list[dict], z_um: float | None, marks: dict[int, str]) -> str:
    headers = ["plane", "z (µm)", "focus in", "focus out", "PSNR in", "SSIM in", "PSNR out", "SSIM out", ""]
    body = []
    for row in rows:
        z = "-" if z_um is None else f"{row['plane'] * z_um:.2f}"
        body.append([str(row["plane"]), z, _fmt(row["focus_input"], "focus"), _fmt(row["focus_result"], "focus"),
                     _fmt(row["psnr_input"], "psnr"), _fmt(row["ssim_input"], "ssim"),
                     _fmt(row["psnr_result"], "psnr"), _fmt(row["ssim_result"], "ssim"), marks.get(row["plane"], "")])
    widths = [max(len(r[i]) for r in [headers, *body]) for i in range(len(headers))]
    lines = ["  ".join(cell.rjust(w) if i < len(headers) - 1 else cell for i, (cell, w) in enumerate(zip(r, widths)))
             for r in [headers, *body]]
    return "\n".join(line.rstrip() for line in lines)


def _write_csv(path: Path, rows: list[dict], z_um: float | None, measure: str) -> None:
    from ..focus import TABLE_COLUMNS

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow([*TABLE_COLUMNS[:1], "z_um", "measure", *TABLE_COLUMNS[1:]])
        for row in rows:
            z = "" if z_um is None else row["plane"] * z_um
            values = ["" if row[c] is None else row[c] for c in TABLE_COLUMNS[1:]]
            writer.writerow([row["plane"], z, measure, *values])


def run(args: argparse.Namespace) -> int:
    from ..focus import focus_table
    from ..io import read_image

    try:
        reference = _reference(args.reference_plane)
        if args.csv is not None:
            if not args.csv.parent.is_dir():
                raise ValueError(f"folder {args.csv.parent} for --csv does not exist; create it first")
            if args.csv.exists() and not args.overwrite:
                raise ValueError(f"{args.csv} already exists; pass --overwrite to replace it")
        image = read_image(args.stack)
        stack, axes = _select(image, args.axes, args, str(args.stack))
        result = None
        if args.result is not None:
            result_image = read_image(args.result)
            result, _ = _select(result_image, args.axes or result_image.axes, args, str(args.result))
            if tuple(result.shape) != tuple(stack.shape):
                raise ValueError(f"{args.result} has {result.shape[0]} planes of {tuple(result.shape[1:])} but "
                                 f"{args.stack} has {stack.shape[0]} planes of {tuple(stack.shape[1:])}; give the "
                                 "result computed from this stack")
        if isinstance(reference, int) and not 0 <= reference < stack.shape[0]:
            raise ValueError(f"--reference-plane {reference} is out of range: {args.stack} has planes 0 to "
                             f"{stack.shape[0] - 1}")
    except (ValueError, TypeError, OSError) as err:
        return _fail(str(err))

    bar = ProgressBar(args.stack.name, "plane", args.quiet)
    try:
        rows = focus_table(stack, result, reference=reference, measure=args.measure, progress=bar)
    except (ValueError, TypeError) as err:
        return _fail(str(err), 1)
    finally:
        bar.close()

    z_um = image.scale.get(PLANE_AXIS)
    best_in = max(rows, key=lambda r: r["focus_input"])["plane"]
    ref_plane = best_in if reference == "auto" else reference
    marks: dict[int, list[str]] = {}
    marks.setdefault(best_in, []).append("best in")
    if result is not None:
        best_out = max(rows, key=lambda r: r["focus_result"])["plane"]
        marks.setdefault(best_out, []).append("best out")
    if ref_plane is not None:
        marks.setdefault(ref_plane, []).append("reference")
    print(f"{args.stack}  (axes {axes}, {stack.shape[0]} planes of {stack.shape[1]} x {stack.shape[2]}, "
          f"measure {args.measure})")
    if args.result is not None:
        print(f"result: {args.result}")
    print(_table(rows, z_um, {k: ", ".join(v) for k, v in marks.items()}))
    print(f"best-focus plane: input {best_in}" + (f", result {best_out}" if result is not None else ""))
    if ref_plane is not None:
        how = "the input's best-focused plane" if reference == "auto" else "chosen"
        print(f"reference for PSNR/SSIM: input plane {ref_plane} ({how})")
    if args.csv is not None:
        try:
            _write_csv(args.csv, rows, z_um, args.measure)
        except OSError as err:
            return _fail(f"cannot write {args.csv}: {err}", 1)
        print(f"table written to {args.csv}", file=sys.stderr)
    return 0
