"""DGNO network behaviour: official state-dict layouts, any image size, precision, routing, training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_dgno.model import DGNO
from napari_dgno.model.assm import SelectiveScan
from napari_dgno.model.configs import tiny_network_g
from napari_dgno.model.dgno import reflect_pad
from napari_dgno.model.scan import selective_scan

from model_utils import randomized

MANIFESTS = sorted((Path(__file__).parent / "data" / "official_state_dicts").glob("*.json"))


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.stem)
def test_state_dict_equals_official_layout(manifest):
    """Keys, their order, shapes and dtypes equal the official checkpoint layout, so strict loads work."""
    spec = json.loads(manifest.read_text())
    cfg = spec["config"]
    flux = cfg["flux_mode"]
    net = DGNO(inp_channels=cfg["inp_channels"], out_channels=cfg["out_channels"], variant=cfg["variant"], flux_mode=flux)
    sd = net.state_dict()
    assert list(sd) == list(spec["state_dict"])
    assert {k: list(v.shape) for k, v in sd.items()} == spec["state_dict"]
    assert sum(p.numel() for p in net.parameters()) == spec["num_parameters"]
    for key, dtype in spec["non_float32_dtypes"].items():
        assert str(sd[key].dtype) == f"torch.{dtype}"
    # A state dict with exactly those keys and shapes loads strictly into a fresh network.
    fresh = DGNO(inp_channels=cfg["inp_channels"], out_channels=cfg["out_channels"], variant=cfg["variant"], flux_mode=flux)
    fresh.load_state_dict({k: torch.zeros(v).to(sd[k].dtype) for k, v in spec["state_dict"].items()}, strict=True)


def test_face_index_buffers_are_the_window_faces():
    net = DGNO(**tiny_network_g(variant="face"))
    op = net.conv0
    assert op.face_idx_left.tolist() == list(range(0, 64, 8))
    assert op.face_idx_right.tolist() == list(range(7, 64, 8))
    assert op.face_idx_top.tolist() == list(range(8))
    assert op.face_idx_bottom.tolist() == list(range(56, 64))


def test_accepts_official_yml_keys_and_rejects_unknown():
    cfg = tiny_network_g(num_refinement_blocks=4, heads=[1, 2, 4, 8], train_size=512, dual_pixel_task=False,
                         infer_mode=False, type="DGNO", win_dg=8)
    DGNO(**cfg)
    with pytest.raises(TypeError, match="unknown configuration keys: colour"):
        DGNO(**tiny_network_g(colour="red"))
    with pytest.raises(ValueError, match="flux_mode"):
        DGNO(**tiny_network_g(flux_mode="upwind"))
    with pytest.raises(ValueError, match="routing"):
        DGNO(**tiny_network_g(routing="random"))


@pytest.mark.parametrize("size", [(1, 1), (5, 3), (31, 33), (64, 64), (70, 101)])
def test_any_image_size_gives_cropped_outputs(size):
    torch.manual_seed(0)
    net = randomized(DGNO(**tiny_network_g())).eval()
    h, w = size
    x = torch.rand(2, 1, h, w)
    with torch.no_grad():
        quarter, half, full = net(x)
    assert full.shape == (2, 1, h, w)
    assert half.shape == (2, 1, -(-h // 2), -(-w // 2))
    assert quarter.shape == (2, 1, -(-h // 4), -(-w // 4))
    assert torch.isfinite(full).all()


def test_padding_is_invisible_for_sizes_already_aligned():
    """A 64x96 image is not padded: the result equals the unpadded network on the same pixels."""
    torch.manual_seed(0)
    net = randomized(DGNO(**tiny_network_g())).double().eval()
    x = torch.rand(1, 1, 64, 96, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(net(x)[2], net._forward_padded(x)[2])
        # An odd size is processed as its reflect-padded version, then cropped.
        y = x[..., :50, :77]
        padded = net._forward_padded(reflect_pad(y, 14, 19))[2][..., :50, :77]
        assert torch.equal(net(y)[2], padded)


@pytest.mark.parametrize("pad", [(3, 0), (0, 5), (40, 70), (100, 1)])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (7, 5)])
def test_reflect_pad_equals_numpy_reflect(size, pad):
    """Pads larger than the image repeat the reflection, exactly like numpy's 'reflect' mode."""
    x = torch.arange(size[0] * size[1], dtype=torch.float64).reshape(1, 1, *size)
    ours = reflect_pad(x, *pad)[0, 0].numpy()
    mode = "reflect" if min(size) > 1 else "edge"
    ref = np.pad(x[0, 0].numpy(), ((0, pad[0]), (0, pad[1])), mode=mode)
    if min(size) == 1:  # numpy reflect cannot reflect a single row/column; we replicate it
        assert ours.shape == ref.shape
    else:
        np.testing.assert_array_equal(ours, ref)


def test_float64_and_float32_agree():
    # dim 48 (head dim 3 at level 1, as released): with dim 32 the Galerkin LayerNorm normalises
    # pairs of numbers, which amplifies float32 rounding to ~2e-4 by itself.
    torch.manual_seed(0)
    net = randomized(DGNO(**tiny_network_g(dim=48))).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        y32 = net(x)[2]
        y64 = net.double()(x.double())[2]
    assert y64.dtype == torch.float64
    assert float((y32.double() - y64).norm() / y64.norm()) < 1e-5


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_scan_module_on_half_tokens_computes_in_float32(half):
    # Under autocast the ASSM's tokens are bf16/fp16, but the scan never runs in half: the result
    # must be the float32 scan of the same (exactly converted) values, returned in float32.
    torch.manual_seed(0)
    module = SelectiveScan(d_inner=24, d_state=8)
    u = torch.randn(2, 24, 37).to(half)
    prompt = torch.randn(2, 37, 8)
    with torch.no_grad():
        # the projections of half tokens round to half; compare with the same rounding, done first
        xdbl = torch.einsum("cd,bdl->bcl", module.x_proj_weight[0].to(half), u)
        dts, Bs, Cs = torch.split(xdbl, [module.dt_rank, 8, 8], dim=1)
        dts = torch.einsum("dr,brl->bdl", module.dt_projs_weight[0].to(half), dts)
        expected = selective_scan(u.float(), dts.float(), -torch.exp(module.A_logs), Bs.float().unsqueeze(1),
                                  (Cs.float() + prompt.transpose(1, 2)).unsqueeze(1), module.Ds,
                                  module.dt_projs_bias.view(-1), delta_softplus=True)
        y = module(u, prompt)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, expected, rtol=0, atol=0)


def test_eval_mode_is_deterministic_and_gumbel_is_not():
    torch.manual_seed(0)
    net = randomized(DGNO(**tiny_network_g())).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        a, b = net(x)[2], net(x)[2]
        assert torch.equal(a, b)
        net.routing = "gumbel"
        g1, g2 = net(x)[2], net(x)[2]
    assert not torch.equal(g1, g2)
    assert all(m.routing == "gumbel" for m in net.modules() if hasattr(m, "routing") and not isinstance(m, DGNO))


def test_training_mode_samples_and_backpropagates():
    torch.manual_seed(0)
    net = randomized(DGNO(**tiny_network_g())).train()
    x = torch.rand(2, 1, 64, 64)
    outs = net(x)
    loss = sum(o.abs().mean() for o in outs)
    loss.backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    missing = [n for n, g in grads.items() if g is None]
    # embeddingB/route get gradients through the straight-through Gumbel estimator like the original.
    assert not missing, missing
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert float(net.conv0.tau.grad.abs()) > 0
    with torch.no_grad():
        assert not torch.equal(net(x)[2], net(x)[2])  # training mode samples the routing


def test_three_channel_model_and_input_validation():
    net = DGNO(**tiny_network_g(3)).eval()
    with torch.no_grad():
        assert net(torch.rand(1, 3, 40, 40))[2].shape == (1, 3, 40, 40)
    with pytest.raises(ValueError, match=r"expects \(B, 3, H, W\)"):
        net(torch.rand(1, 1, 40, 40))
