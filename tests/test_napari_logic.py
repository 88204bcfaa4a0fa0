"""The widget's decisions without a viewer: axes of a layer, what a preview covers, which fields block Run."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from napari_helpers import save_tiny_checkpoint

from napari_dgno._napari.devices import accelerations_for
from napari_dgno._napari.layer_info import LayerSnapshot, layer_axes, physical_scale
from napari_dgno._napari.model_choice import CACHED, DOWNLOAD, ModelChoice, availability, local_choice
from napari_dgno._napari.output_layers import output_name, preview_region
from napari_dgno._napari.validation import FormState, validate
from napari_dgno._napari.workers import DeblurRequest, ModelCache, deblur_job
from napari_dgno.registry import get_model_info


def _snap(shape, *, rgb=False, dtype=np.uint16, position=None, visible=None, scale=None) -> LayerSnapshot:
    ndim = len(shape) - int(rgb)
    return LayerSnapshot(
        name="img", data=np.zeros(shape, dtype), shape=tuple(shape), dtype=np.dtype(dtype), rgb=rgb,
        multiscale=False, scale=scale or (1.0,) * ndim, translate=(0.0,) * ndim, units=("µm",) * ndim,
        axis_labels=tuple(f"{-i}" for i in range(ndim, 0, -1)), contrast_limits=(0.0, 1.0), colormap="gray",
        position=position or (0,) * ndim, visible=visible,
    )


def _form(snap, axes, *, model="demo", state=CACHED, device="cpu", tile=None, overlap=32, precision="fp32",
          accelerate="auto"):
    choice = ModelChoice(model, model, get_model_info(model)) if model else None
    return FormState(snapshot=snap, axes=axes, model=choice, model_state=state if model else None, device=device,
                     tile=tile, overlap=overlap, batch_size=None, precision=precision, accelerate=accelerate)


@pytest.mark.parametrize(
    ("shape", "rgb", "labels", "channels", "axes", "ambiguous"),
    [
        ((64, 64), False, (), 1, "YX", False),
        ((5, 64, 64), False, (), 1, "ZYX", False),
        ((64, 64, 3), True, (), 3, "YXC", False),
        ((4, 64, 64, 3), True, (), 3, "ZYXC", False),
        ((2, 5, 64, 64), False, ("T", "Z", "Y", "X"), 1, "TZYX", False),  # labels from the DGNO reader win
        ((2, 5, 64, 64), False, (), 1, "TZYX", True),  # a guess for 4-D data: the user should check
        ((64, 64, 3), False, (), 1, "YXC", True),  # colour or 3 planes? (napari did not take it as RGB)
        ((3, 64, 64), False, (), 3, "CYX", True),  # an RGB model on a non-RGB layer
    ],
)
def test_layer_axes(shape, rgb, labels, channels, axes, ambiguous):
    guess = layer_axes(shape, np.uint8 if rgb else np.uint16, rgb, labels, channels)
    assert (guess.axes, guess.ambiguous) == (axes, ambiguous)
    assert guess.note


def test_physical_scale_skips_pixel_units_and_rgb_samples():
    assert physical_scale("ZYX", False, (2.0, 0.5, 0.5), ("µm", "µm", "µm")) == (
        {"Z": 2.0, "Y": 0.5, "X": 0.5}, {"Z": "µm", "Y": "µm", "X": "µm"})
    assert physical_scale("ZYX", False, (1.0, 0.5, 0.5), ("pixel", "µm", "µm"))[0] == {"Y": 0.5, "X": 0.5}
    assert physical_scale("YXC", True, (0.25, 0.25), ("µm", "µm"))[0] == {"Y": 0.25, "X": 0.25}


def test_preview_is_the_current_plane_of_a_stack():
    snap = _snap((7, 100, 120), position=(4, 50, 60), scale=(2.0, 0.5, 0.5))
    region = preview_region(snap, "ZYX")
    assert region.index == (slice(4, 5), slice(0, 100), slice(0, 120))
    assert region.translate(snap) == (8.0, 0.0, 0.0) and not region.cropped
    assert snap.data[region.index].shape == (1, 100, 120)


def test_preview_of_a_large_image_is_the_visible_part_at_most_1024_pixels():
    snap = _snap((4000, 3000), visible=((1000, 1400), (200, 2600)))
    region = preview_region(snap, "YX")
    (ys, xs) = region.index
    assert (ys.start, ys.stop) == (1000, 1400)  # the visible rows
    assert xs.stop - xs.start == 1024 and xs.start == (200 + 2600) // 2 - 512  # centred, capped
    assert region.cropped and "visible region" in region.description
    rgb = preview_region(_snap((64, 64, 3), rgb=True, dtype=np.uint8), "YXC")
    assert rgb.index == (slice(0, 64), slice(0, 64), slice(None))


def test_output_names():
    assert output_name("cells", "DGNO_BBBC006_w1_Face") == "cells [DGNO DGNO_BBBC006_w1_Face]"
    assert output_name("cells", "demo", preview=True) == "cells [DGNO demo preview]"


def test_validation_accepts_a_good_form_and_names_each_problem():
    stack = _snap((5, 64, 64))
    assert validate(_form(stack, "ZYX")) == {}

    assert "no image layer" in validate(_form(None, ""))["layer"]
    assert "too small" in validate(_form(_snap((1, 1)), "YX"))["layer"]
    assert "boolean" in validate(_form(_snap((32, 32), dtype=bool), "YX"))["layer"]
    assert "letters" in validate(_form(stack, "ZY"))["axes"]
    assert "RGB" in validate(_form(stack, "ZYX", model="DGNO_3DHistech_Face"))["axes"]
    assert "YXC" in validate(_form(_snap((64, 64, 3), rgb=True, dtype=np.uint8), "CYX"))["axes"]
    assert "Fetch" in validate(_form(stack, "ZYX", state=DOWNLOAD))["model"]
    assert "no model" in validate(_form(stack, "ZYX", model=None))["model"]
    assert "multiple of 32" in validate(_form(stack, "ZYX", tile=100))["tile"]
    assert "half the tile" in validate(_form(stack, "ZYX", tile=64, overlap=48))["tile"]
    assert "fp16" in validate(_form(stack, "ZYX", precision="fp16"))["precision"]
    assert "CUDA GPU" in validate(_form(stack, "ZYX", accelerate="compile+graphs"))["accelerate"]
    assert "must be one of" in validate(_form(stack, "ZYX", accelerate="fast"))["accelerate"]
    assert validate(_form(stack, "ZYX", accelerate="compile")) == {}
    assert validate(_form(stack, "ZYX", device="cuda:0", accelerate="graphs")).get("accelerate") is None
    busy = FormState(**{**_form(stack, "ZYX").__dict__, "busy": True})
    assert "running" in validate(busy)["busy"]


def test_accelerations_offered_per_device_are_the_ones_the_engine_accepts():
    assert accelerations_for("cpu") == ["auto", "none", "compile"]
    assert accelerations_for("mps") == ["auto", "none", "compile"]
    assert accelerations_for("cuda:0") == ["auto", "none", "graphs", "compile", "compile+graphs"]


def test_the_acceleration_choice_reaches_the_engine_and_the_record(tmp_path):
    checkpoint = save_tiny_checkpoint(tmp_path / "tiny.pth")
    models = ModelCache()
    image = np.random.default_rng(0).random((64, 64), np.float32)

    def job(accelerate):
        request = DeblurRequest(data=image, axes="YX", model=str(checkpoint), device="cpu", tile=None, overlap=8,
                                batch_size=None, precision="fp32", input_name="img", accelerate=accelerate)
        return deblur_job(request, models, threading.Event())

    def outcome(accelerate):
        steps = job(accelerate)
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                return stop.value

    done = outcome("none")
    assert done.error is None and done.record["parameters"]["accelerate"] == "none"
    refused = outcome("graphs")  # the engine's own check answers: the mode got there
    assert refused.result is None and "CUDA graphs" in refused.error
    compiling = job("compile")  # the status says why the first batch takes long (not run: it compiles)
    assert "compiling" in next(compiling).message
    compiling.close()
    stack = np.random.default_rng(1).random((2, 64, 64), np.float32)
    lazy = deblur_job(DeblurRequest(data=stack, axes="ZYX", model=str(checkpoint), device="cpu", tile=None,
                                    overlap=8, batch_size=None, precision="fp32", input_name="stack", mode="lazy",
                                    accelerate="compile"), models, threading.Event())
    # lazy + compile: the worker compiles on the first plane, not the viewer when it first shows one
    assert "compiling on the first plane" in next(lazy).message
    lazy.close()


def test_local_files_are_available_until_they_disappear(tmp_path):
    path = tmp_path / "mine.pth"
    path.write_bytes(b"x")
    choice = local_choice(path)
    assert availability(choice)[0] == "local" and choice.is_local and choice.channels is None
    path.unlink()
    state, text = availability(choice)
    assert state == "missing" and "no longer exists" in text
