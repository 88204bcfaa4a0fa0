"""Loading local checkpoint files: both formats, both weight sets, safety, clear errors."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from napari_dgno import registry
from napari_dgno.checkpoints import (
    ArchitectureMismatchError,
    CheckpointError,
    DeviceUnavailableError,
    UnsafeCheckpointError,
    load_model,
    sha256_file,
)
from napari_dgno.model import DGNO
from napari_dgno.model.configs import tiny_network_g


def random_state(cfg: dict, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = DGNO(**cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model.state_dict()


@pytest.fixture(scope="module")
def tiny_states():
    cfg = tiny_network_g(1)
    return cfg, random_state(cfg, 1), random_state(cfg, 2)


def output(model: DGNO, seed: int = 0) -> torch.Tensor:
    x = torch.rand(1, model.in_channels, 64, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)[-1]


def assert_weights_equal(model: DGNO, state: dict) -> None:
    loaded = model.state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0, msg=key)


def test_pth_with_both_weight_sets(tmp_path, tiny_states):
    cfg, params, ema = tiny_states
    path = tmp_path / "my_dgno.pth"
    torch.save({"params": params, "params_ema": ema}, path)

    raw = load_model(path, device="cpu")
    smooth = load_model(str(path), device="cpu", weights="params_ema")
    assert_weights_equal(raw, params)
    assert_weights_equal(smooth, ema)
    assert not raw.training and not smooth.training
    assert next(raw.parameters()).device.type == "cpu"
    assert not torch.allclose(output(raw), output(smooth))

    info = raw.info
    assert info.name == "my_dgno" and info.official is False
    assert info.channels == 1 and info.variant == "face" and info.normalization == "minmax"
    assert info.local_path == str(path) and info.sha256 == sha256_file(path)
    assert info.network_g["dim"] == cfg["dim"] and info.network_g["num_blocks"] == cfg["num_blocks"]
    assert raw.weights == "params" and smooth.weights == "params_ema"


def test_bare_state_dict_and_missing_ema_is_a_clear_error(tmp_path, tiny_states):
    _, params, _ = tiny_states
    bare = tmp_path / "bare.pt"
    torch.save(params, bare)
    assert_weights_equal(load_model(bare, device="cpu"), params)
    with pytest.raises(CheckpointError, match=r"no 'params_ema'.*single state dict.*weights='params'"):
        load_model(bare, device="cpu", weights="params_ema")

    only_raw = tmp_path / "only_raw.pth"
    torch.save({"params": params}, only_raw)
    with pytest.raises(CheckpointError, match=r"no 'params_ema' weights: it holds only 'params'"):
        load_model(only_raw, device="cpu", weights="params_ema")
    with pytest.raises(ValueError, match="weights must be one of"):
        load_model(only_raw, device="cpu", weights="ema")


def test_ddp_prefixed_state_dict_loads(tmp_path, tiny_states):
    _, params, _ = tiny_states
    path = tmp_path / "ddp.pth"
    torch.save({"params": {f"module.{k}": v for k, v in params.items()}}, path)
    assert_weights_equal(load_model(path, device="cpu"), params)


def test_safetensors_with_metadata_and_both_sets(tmp_path):
    cfg = tiny_network_g(3, variant="cell", flux_mode="avg_jump", boundary_type="dirichlet")
    params, ema = random_state(cfg, 3), random_state(cfg, 4)
    path = tmp_path / "rgb_model.safetensors"
    tensors = {f"params.{k}": v for k, v in params.items()} | {f"params_ema.{k}": v for k, v in ema.items()}
    save_file(tensors, str(path), metadata={"network_g": json.dumps(cfg), "normalization": "minmax"})

    model = load_model(path, device="cpu")
    assert_weights_equal(model, params)
    assert_weights_equal(load_model(path, device="cpu", weights="params_ema"), ema)
    # flux and boundary come from the metadata (the state dict alone would give jump/neumann)
    assert (model.conv0.flux_mode, model.conv0.boundary_type) == ("avg_jump", "dirichlet")
    assert model.info.normalization == "minmax"  # metadata beats the 3-channel default
    assert model.info.channels == 3 and model.info.variant == "cell"
    assert load_model(path, device="cpu", normalization="rgb255").info.normalization == "rgb255"


def test_bare_safetensors_and_rgb_default_normalization(tmp_path):
    cfg = tiny_network_g(3)
    params = random_state(cfg, 5)
    path = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in params.items()}, str(path))
    model = load_model(path, device="cpu")
    assert_weights_equal(model, params)
    assert model.info.normalization == "rgb255"
    with pytest.raises(CheckpointError, match="no 'params_ema'"):
        load_model(path, device="cpu", weights="params_ema")


class _Payload:
    """Unpickling this calls open(marker, 'w'): the file appears only if the pickle's code runs."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, tiny_states, writer):
    _, params, _ = tiny_states
    marker = tmp_path / "payload_ran"
    path = tmp_path / "evil.pth"
    content = {"params": params, "hook": _Payload(marker)}
    if writer == "torch.save":
        torch.save(content, path)
    else:
        with open(path, "wb") as handle:
            pickle.dump(content, handle, protocol=2)

    with pytest.raises(UnsafeCheckpointError) as caught:
        load_model(path, device="cpu")
    message = str(caught.value)
    assert str(path) in message and "executable pickle data" in message and "re-save" in message
    assert not marker.exists()

    # the file really is malicious: an unsafe load runs the payload
    with open(path, "rb") as handle:
        torch.load(path, weights_only=False) if writer == "torch.save" else pickle.load(handle)
    assert marker.exists()


def test_unreadable_files_give_clear_errors(tmp_path, tiny_states):
    _, params, _ = tiny_states
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(empty, device="cpu")
    good = tmp_path / "good.pth"
    torch.save({"params": params}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(truncated, device="cpu")
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match=r"not a valid \.safetensors"):
        load_model(broken, device="cpu")
    with pytest.raises(CheckpointError, match=r"unknown checkpoint type '\.h5'"):
        other = tmp_path / "weights.h5"
        other.write_bytes(b"x")
        load_model(other, device="cpu")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nowhere.pth", device="cpu")
    with pytest.raises(CheckpointError, match=r"no model named 'DGNO_BBBC007'.*known models"):
        load_model("DGNO_BBBC007", device="cpu")
    not_dgno = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, not_dgno)
    with pytest.raises(CheckpointError, match="not a DGNO state dict"):
        load_model(not_dgno, device="cpu")


def test_overrides_and_devices_are_checked_before_loading(tmp_path, tiny_states):
    _, params, _ = tiny_states
    path = tmp_path / "m.pth"
    torch.save({"params": params}, path)
    with pytest.raises(TypeError, match=r"unknown setting.*flux;.*allowed: normalization"):
        load_model(path, device="cpu", flux="jump")
    with pytest.raises(ValueError, match="normalization must be one of"):
        load_model(path, device="cpu", normalization="zscore")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        load_model(path, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
            load_model(path, device="cuda:1")
    assert next(load_model(path, device="auto").parameters()).device.type in ("cpu", "cuda", "mps")
    assert load_model(path, device="cpu", routing="gumbel").routing == "gumbel"


def test_wrong_channels_for_a_local_file_names_the_shapes(tmp_path, tiny_states):
    _, params, _ = tiny_states
    path = tmp_path / "gray.pth"
    torch.save({"params": params}, path)
    with pytest.raises(ArchitectureMismatchError) as caught:
        load_model(path, device="cpu", inp_channels=3, out_channels=3)
    message = str(caught.value)
    assert "patch_embed.proj.weight: file [32, 1, 3, 3] vs network [32, 3, 3, 3]" in message
    assert "overrides" in message and len(message) < 1500


def test_local_copy_of_a_registry_model_uses_its_official_configuration(tmp_path):
    """A file named like an official checkpoint gets that model's flux/boundary, which shapes cannot tell."""
    entry = registry.get_model_info("DGNO_BBBC006_w1_Face")  # avg_jump + dirichlet
    params = DGNO(**entry.network_g).state_dict()
    path = tmp_path / "DGNO_BBBC006_w1_Face.pth"
    torch.save({"params": params}, path)
    model = load_model(path, device="cpu")
    assert (model.conv0.flux_mode, model.conv0.boundary_type) == ("avg_jump", "dirichlet")
    assert model.info.name == entry.name and model.info.dataset == "BBBC006"
    assert model.info.local_path == str(path) and model.info.sha256 == sha256_file(path)


def test_local_file_named_like_an_official_one_with_another_hash_is_flagged(tmp_path):
    entry = registry.get_model_info("DGNO_3DHistech_Face")  # the one with a published sha256
    path = tmp_path / "DGNO_3DHistech_Face.pth"
    torch.save({"params": DGNO(**entry.network_g).state_dict()}, path)
    with pytest.warns(UserWarning, match="sha256 .* differs from the published"):
        model = load_model(path, device="cpu")
    assert model.info.official is False and model.info.normalization == "rgb255"
    assert model.conv0.flux_mode == "avg_jump"


def test_a_user_file_called_demo_is_inferred_not_taken_for_the_bundled_demo(tmp_path, tiny_states):
    cfg, params, _ = tiny_states
    path = tmp_path / "demo.pth"
    torch.save({"params": params}, path)
    model = load_model(path, device="cpu")
    assert model.info.official is False and model.info.network_g["num_blocks"] == cfg["num_blocks"]
