"""`napari-dgno models list|info|fetch` against a populated offline Hugging Face cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_checkpoints_hub import populate_hf_cache  # the one helper that builds a real HF cache layout

from napari_dgno import registry
from napari_dgno.checkpoints import sha256_file
from napari_dgno.cli import main


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    hub_cache = tmp_path / "hub"
    hub_cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(registry.REVISION_ENV, raising=False)
    weights = tmp_path / "w2_cell.pth"
    torch.save({"params": {"x": torch.zeros(1)}}, weights)
    populate_hf_cache(hub_cache, "DGNO_BBBC006_w2_Cell", weights)
    return hub_cache


def rows(text: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in text.splitlines() if line.startswith(("DGNO_", "demo"))}


def test_list_shows_every_model_and_what_is_cached(cache, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    table = rows(out)
    assert set(table) == {m.name for m in registry.list_models()}
    assert table["DGNO_BBBC006_w2_Cell"][-2:] == ["yes", "-"]
    assert table["DGNO_BBBC006_w1_Face"][-2:] == ["no", "-"]
    assert table["DGNO_3DHistech_Face"][-2:] == ["no", "known"]
    assert str(cache) in out

    assert main(["models", "list", "--json"]) == 0
    listed = {m["name"]: m for m in json.loads(capsys.readouterr().out)}
    assert listed["DGNO_BBBC006_w2_Cell"]["cached"] is True
    assert listed["DGNO_3DHistech_Face"]["network_g"]["flux_mode"] == "avg_jump"


def test_info_prints_all_fields_config_and_cache_path(cache, capsys):
    assert main(["models", "info", "dgno_bbbc006_w2_cell"]) == 0
    out = capsys.readouterr().out
    entry = registry.get_model_info("DGNO_BBBC006_w2_Cell")
    for field in ("dataset", "modality", "stain", "channels", "variant", "repo_id", "filename", "license", "citation"):
        assert f"{field}:" in out
    assert entry.modality in out and "num_blocks: [2, 4, 6, 2]" in out and 'flux_mode: "jump"' in out
    assert str(cache / "models--Duane245--DGNO" / "snapshots") in out

    assert main(["models", "info", "DGNO_3DHistech_Face", "--json"]) == 0
    fields = json.loads(capsys.readouterr().out)
    assert fields["sha256"] == registry.get_model_info("DGNO_3DHistech_Face").sha256
    assert fields["cached"] is False and fields["network_g"]["boundary_type"] == "dirichlet"
    assert main(["models", "info", "nonexistent"]) == 2
    assert "known models" in capsys.readouterr().err


def test_fetch_offline_reports_cached_and_missing_models(cache, capsys):
    assert main(["models", "fetch", "DGNO_BBBC006_w2_Cell"]) == 0
    out = capsys.readouterr().out
    pointer = cache / "models--Duane245--DGNO" / "snapshots"
    assert "DGNO_BBBC006_w2_Cell:" in out and str(pointer) in out
    assert sha256_file(next(pointer.rglob("DGNO_BBBC006_w2_Cell.pth"))) in out

    assert main(["models", "fetch", "all"]) == 1
    captured = capsys.readouterr()
    assert "DGNO_BBBC006_w2_Cell:" in captured.out
    assert "5 of 6 model(s) could not be fetched" in captured.err
    assert "DGNO_3DHistech_Face: FAILED" in captured.err and "HF_HUB_OFFLINE" in captured.err
    assert main(["models", "fetch", "bogus"]) == 2


def test_models_without_action_prints_help(capsys):
    assert main(["models"]) == 2
    assert "list" in capsys.readouterr().err


def test_the_installed_command_runs_offline(cache):
    script = shutil.which("napari-dgno", path=str(Path(sys.executable).parent))
    fallback = [sys.executable, "-c", "import sys; from napari_dgno.cli import main; sys.exit(main())"]
    command = [script] if script else fallback
    result = subprocess.run(
        [*command, "models", "list"], capture_output=True, text=True, env=dict(os.environ), timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert rows(result.stdout)["DGNO_BBBC006_w2_Cell"][-2] == "yes"
