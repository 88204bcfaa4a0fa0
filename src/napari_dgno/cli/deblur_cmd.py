"""`napari-dgno deblur INPUT -o OUTPUT`: deblur TIFF/OME-TIFF files headless, with provenance.

INPUT is a file or a folder (every .tif/.tiff in it, written under the same names into the OUTPUT
folder). Files are read lazily and written page by page, so memory stays at a few planes however
large the stack. With ``--scheduler ADDRESS`` the planes run on a dask.distributed cluster (each
worker loads the model once; the files must be visible to the workers at the same paths).
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from ._progress import ProgressBar

TIFF_SUFFIXES = (".tif", ".tiff")
PRECISIONS = ("fp32", "bf16", "fp16")
ACCELERATIONS = ("auto", "none", "graphs", "compile", "compile+graphs")  # engine.acceleration (kept import-light)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "deblur",
        help="deblur a TIFF/OME-TIFF file or a folder of them",
        description="Remove defocus blur from a TIFF/OME-TIFF image, z-stack or time series (or every "
        ".tif/.tiff in a folder). Output is float32 in the input's intensity units, with the input's "
        "axes and pixel sizes and a record of the model and parameters (metadata key 'napari_dgno').",
    )
    parser.add_argument("input", metavar="INPUT", type=Path, help="a .tif/.tiff/.ome.tif file, or a folder of them")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="OUTPUT",
                        help="output file (.tif, .tiff, .ome.tif, .ome.tiff) or folder (for a folder INPUT)")
    parser.add_argument("--model", default="demo", metavar="NAME|PATH",
                        help="registry name (see 'napari-dgno models list') or checkpoint path (default: demo)")
    parser.add_argument("--axes", default=None,
                        help="axes of the input, e.g. ZYX, TZCYX, YXC (default: from the file)")
    parser.add_argument("--tile", type=int, default=None,
                        help="tile edge in pixels, a multiple of 32 (default: 256 on CPU, 512 on GPU)")
    parser.add_argument("--overlap", type=int, default=32, help="pixels shared by neighbouring tiles (default: 32)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="tiles per forward pass (default: 1 on CPU, 1024x1024 pixels' worth on GPU)")
    parser.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="fp32 (default), bf16 (CUDA, CPU) or fp16 (CUDA)")
    parser.add_argument("--accelerate", default="auto", choices=ACCELERATIONS,
                        help="auto (CUDA graphs on a GPU), none, graphs, compile, compile+graphs (compile: "
                             "minutes on first use, faster on long jobs)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="dask.distributed scheduler address (e.g. tcp://host:8786) to run on a cluster")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _fail(message: str, code: int = 2) -> int:
    print(f"napari-dgno deblur: error: {message}", file=sys.stderr)
    return code


def _plan(source: Path, output: Path) -> list[tuple[Path, Path]]:
    """(input, output) pairs; ValueError for combinations that cannot work."""
    if not source.exists():
        raise ValueError(f"input {source} does not exist")
    if source.is_dir():
        files = sorted(p for p in source.iterdir()
                       if p.is_file() and p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise ValueError(f"no .tif/.tiff files in folder {source}")
        if output.exists() and not output.is_dir():
            raise ValueError(f"INPUT is a folder, so OUTPUT must be a folder too; {output} is a file")
        if output.resolve() == source.resolve():
            raise ValueError("OUTPUT is the INPUT folder; choose another folder so your originals are kept")
        return [(p, output / p.name) for p in files]
    target = output / source.name if output.is_dir() else output
    if not target.name.lower().endswith(TIFF_SUFFIXES):
        raise ValueError(f"output {target} must end in .tif, .tiff, .ome.tif or .ome.tiff")
    if target.exists() and target.resolve() == source.resolve():
        raise ValueError("OUTPUT is the INPUT file; choose another name so your original is kept")
    return [(source, target)]


def _deblur_file(source: Path, target: Path, args: argparse.Namespace, record: dict, distributed: bool) -> Path:
    import datetime as dt

    from ..engine import deblur_lazy
    from ..io import read_image, write_image

    if target.exists() and not args.overwrite:
        raise FileExistsError(f"{target} already exists; add --overwrite to replace it")
    image = read_image(source)
    axes = args.axes or image.axes
    cancel = threading.Event()
    bar = ProgressBar(source.name, "plane" if distributed else "tile", args.quiet)
    params = dict(record["parameters"], axes=axes)
    try:
        result = deblur_lazy(image.data, args.model, progress=None if distributed else bar, cancel=cancel, **params)
        record = dict(
            record, parameters=params, input=str(source.resolve()), input_shape=list(image.data.shape),
            input_dtype=str(image.data.dtype), date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        )
        return write_image(
            target, result, axes=axes, scale=image.scale, units=image.units, channel_names=image.channel_names,
            metadata={"napari_dgno": record}, overwrite=args.overwrite,
            progress=bar if distributed else None, cancel=cancel,
        )
    except BaseException:
        cancel.set()  # stop tile loops still running in dask threads (e.g. after Ctrl-C)
        raise
    finally:
        bar.close()


def _connect(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs dask.distributed: pip install 'napari-dgno[distributed]'") from None
    try:
        return Client(address, timeout="20s")
    except OSError as err:
        raise ValueError(f"cannot reach the dask scheduler at {address} ({err})") from err


def run(args: argparse.Namespace) -> int:
    from ..engine import provenance

    try:
        pairs = _plan(args.input, args.output)
    except ValueError as err:
        return _fail(str(err))
    client = None
    try:
        if args.scheduler:
            client = _connect(args.scheduler)
        params = dict(axes=args.axes, tile=args.tile, overlap=args.overlap, batch_size=args.batch_size,
                      device=args.device, precision=args.precision, accelerate=args.accelerate)
        # Load the model once up front: a wrong name, path or device fails before any file is touched.
        record = provenance(args.model, parameters=params, scheduler=args.scheduler)
    except (ValueError, TypeError, OSError, RuntimeError) as err:
        if client is not None:
            client.close()
        return _fail(str(err), 1)
    try:
        if args.input.is_dir():
            args.output.mkdir(parents=True, exist_ok=True)
        failed = 0
        for source, target in pairs:
            try:
                written = _deblur_file(source, target, args, record, distributed=client is not None)
            except (ValueError, TypeError, KeyError, OSError, RuntimeError) as err:
                message = err.args[0] if isinstance(err, KeyError) and err.args else err
                print(f"napari-dgno deblur: {source}: {message}", file=sys.stderr)
                failed += 1
                continue
            print(f"{source} -> {written}", file=sys.stderr)
        if failed and len(pairs) > 1:
            print(f"napari-dgno deblur: {failed} of {len(pairs)} files failed", file=sys.stderr)
        return 1 if failed else 0
    finally:
        if client is not None:
            client.close()
