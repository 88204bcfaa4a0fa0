"""`napari-dgno models list|fetch|info`: see, download (prefetch for offline use) and inspect the registry."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``models`` and its three sub-commands."""
    parser = subparsers.add_parser(
        "models",
        help="list, download and inspect the DGNO checkpoints",
        description="The official DGNO checkpoints (Hugging Face Duane245/DGNO) and the bundled demo model. "
        "Downloads go to the Hugging Face cache (HF_HUB_CACHE / HF_HOME); with HF_HUB_OFFLINE=1 only "
        "cached models are used.",
    )
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    listing = sub.add_parser("list", help="table of the known models and whether each is cached")
    listing.add_argument("--json", action="store_true", help="print the registry as JSON instead of a table")
    listing.set_defaults(func=_list)
    fetch = sub.add_parser("fetch", help="download models into the cache (run once on a connected machine)")
    fetch.add_argument("names", nargs="+", metavar="NAME", help="model name(s), or 'all' for every official model")
    fetch.add_argument("--force", action="store_true", help="download again even when cached")
    fetch.set_defaults(func=_fetch)
    info = sub.add_parser("info", help="every field of one model, its configuration and its cache path")
    info.add_argument("name", metavar="NAME")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(func=_info)
    parser.set_defaults(func=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cached_label(info: Any, cached: bool) -> str:
    if info.repo_id is None:
        return "bundled" if cached else "missing"
    return "yes" if cached else "no"


def _list(args: argparse.Namespace) -> int:
    from ..checkpoints import hub_cache_dir, is_cached, list_models

    models = list_models()
    if args.json:
        print(json.dumps([dict(m.as_dict(), cached=is_cached(m.name)) for m in models], indent=2))
        return 0
    rows = [["NAME", "DATASET", "STAIN / CHANNEL", "CH", "VARIANT", "CACHED", "SHA256"]]
    for m in models:
        rows.append([m.name, m.dataset.split(" ")[0], f"{m.stain} / {m.channel}", str(m.channels), m.variant,
                     _cached_label(m, is_cached(m.name)), "known" if m.sha256 else "-"])
    print(_table(rows))
    print(f"\ncache: {hub_cache_dir()}  (download: napari-dgno models fetch NAME|all)")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from ..checkpoints import CheckpointError, fetch_model, get_model_info, list_models, sha256_file

    if [n.lower() for n in args.names] == ["all"]:
        names = [m.name for m in list_models() if m.repo_id is not None]
    else:
        try:
            names = [get_model_info(n).name for n in args.names]
        except KeyError as err:
            print(f"napari-dgno models fetch: {err.args[0]}", file=sys.stderr)
            return 2
    failed = 0
    for name in names:
        try:
            path = fetch_model(name, force=args.force)
        except CheckpointError as err:
            print(f"{name}: FAILED: {err}", file=sys.stderr)
            failed += 1
            continue
        info = get_model_info(name)
        check = "sha256 verified" if info.sha256 else f"sha256 {sha256_file(path)} (none published to compare)"
        print(f"{name}: {path} ({check})")
    if failed:
        print(f"{failed} of {len(names)} model(s) could not be fetched", file=sys.stderr)
    return 1 if failed else 0


def _info(args: argparse.Namespace) -> int:
    from ..checkpoints import cached_path, get_model_info, hub_cache_dir

    try:
        info = get_model_info(args.name)
    except KeyError as err:
        print(f"napari-dgno models info: {err.args[0]}", file=sys.stderr)
        return 2
    path = cached_path(info.name)
    fields = info.as_dict()
    fields["keywords"] = list(fields["keywords"])
    fields["pinned_revision"] = info.pinned_revision
    fields["cached"] = path is not None
    fields["cache_path"] = str(path) if path else None
    if info.repo_id is not None:
        fields["cache_dir"] = str(hub_cache_dir())
    if args.json:
        print(json.dumps(fields, indent=2))
        return 0
    for key, value in fields.items():
        if key == "network_g":
            continue
        print(f"{key + ':':<16} {value if value not in (None, '') else '-'}")
    if path is None and info.repo_id is not None:
        print(f"{'':<16} not cached: `napari-dgno models fetch {info.name}` downloads it into {hub_cache_dir()}")
    print("network_g:")  # one `key: JSON value` per line, which is also valid YAML
    for key, value in info.network_g.items():
        print(f"  {key}: {json.dumps(value)}")
    return 0
