"""The network configuration of a state dict is recovered from its keys and shapes alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from napari_dgno.checkpoints import ArchitectureMismatchError, CheckpointError, infer_network_g, load_model
from napari_dgno.model import DGNO
from napari_dgno.model.configs import tiny_network_g

MANIFESTS = sorted((Path(__file__).parent / "data" / "official_state_dicts").glob("*.json"))
INT64 = "int64"


def state_from_manifest(manifest: dict) -> dict[str, torch.Tensor]:
    """A state dict with the manifest's keys, order and shapes (random floats, the real face indices)."""
    dtypes = manifest.get("non_float32_dtypes", {})
    state = {}
    for key, shape in manifest["state_dict"].items():
        if dtypes.get(key) == INT64:
            state[key] = torch.arange(int(shape[0]), dtype=torch.int64)  # overwritten by value below
        else:
            state[key] = torch.randn(shape)
    return state


def test_all_eight_official_layouts_are_covered():
    names = {p.stem for p in MANIFESTS}
    assert names == {f"{c}_{v}_{f}" for c in ("1ch", "3ch") for v in ("cell", "face") for f in ("central", "jump")}


@pytest.mark.parametrize("manifest_path", MANIFESTS, ids=lambda p: p.stem)
def test_inferred_config_builds_a_network_that_loads_the_layout_strictly(manifest_path):
    manifest = json.loads(manifest_path.read_text())
    expected = manifest["config"]
    state = state_from_manifest(manifest)
    cfg = infer_network_g(state)

    assert cfg["inp_channels"] == expected["inp_channels"]
    assert cfg["out_channels"] == expected["out_channels"]
    assert cfg["dim"] == expected["dim"]
    assert cfg["num_blocks"] == expected["num_blocks"]
    assert cfg["variant"] == expected["variant"]
    # jump and avg_jump look alike: 'jump' stands for both; central has no tau
    assert cfg["flux_mode"] == ("central" if expected["flux_mode"] == "central" else "jump")
    assert cfg["bias"] is expected["bias"] and cfg["LayerNorm_type"] == expected["LayerNorm_type"]

    model = DGNO(**cfg)
    assert list(model.state_dict()) == list(state)  # same keys, same order as the official network
    face_idx = {k: v for k, v in model.state_dict().items() if ".face_idx_" in k}
    state.update(face_idx)
    model.load_state_dict(state, strict=True)
    torch.testing.assert_close(model.conv0.qkv_proj.weight, state["conv0.qkv_proj.weight"])


def test_what_shapes_cannot_tell_comes_from_overrides(tmp_path):
    """avg_jump vs jump and the boundary are invisible in the state dict: overrides set them."""
    cfg = tiny_network_g(1, flux_mode="avg_jump", boundary_type="dirichlet")
    state = DGNO(**cfg).state_dict()
    path = tmp_path / "mine.pth"
    torch.save({"params": state}, path)

    default = load_model(path, device="cpu")
    assert (default.conv0.flux_mode, default.conv0.boundary_type) == ("jump", "neumann")
    chosen = load_model(path, device="cpu", flux_mode="avg_jump", boundary_type="dirichlet")
    assert (chosen.conv0.flux_mode, chosen.conv0.boundary_type) == ("avg_jump", "dirichlet")
    assert chosen.info.network_g["flux_mode"] == "avg_jump"
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(default(x)[-1], chosen(x)[-1])


def test_tiny_and_bias_free_variants_are_inferred():
    cfg = tiny_network_g(3, variant="cell", LayerNorm_type="BiasFree", bias=True, num_blocks=[1, 2, 1, 1])
    state = DGNO(**cfg).state_dict()
    got = infer_network_g(state)
    for key in ("inp_channels", "dim", "num_blocks", "variant", "LayerNorm_type", "bias"):
        assert got[key] == cfg[key], key
    DGNO(**got).load_state_dict(state, strict=True)


def test_a_dict_that_is_not_dgno_is_named_as_such():
    with pytest.raises(CheckpointError, match=r"not a DGNO state dict.*first keys: fc\.weight"):
        infer_network_g({"fc.weight": torch.zeros(2, 2)})


def test_truncated_state_dict_gives_a_short_report(tmp_path):
    state = DGNO(**tiny_network_g(1)).state_dict()
    truncated = {k: v for k, v in state.items() if not k.startswith(("conv111.", "output."))}
    truncated["output.weight"] = state["output.weight"]
    path = tmp_path / "truncated.pth"
    torch.save({"params": truncated}, path)
    with pytest.raises(ArchitectureMismatchError) as caught:
        load_model(path, device="cpu")
    message = str(caught.value)
    assert "missing from the file" in message and "conv111.tau" in message
    assert "more)" in message  # only the first few keys are listed
    assert len(message.splitlines()) <= 6 and len(message) < 1500
