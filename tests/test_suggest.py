"""suggest_models: from "what is this image" to a ranked list of registry models with reasons."""

from __future__ import annotations

import dataclasses

import dask.array as da
import numpy as np
import pytest

from napari_dgno import registry
from napari_dgno.checkpoints import suggest_models


def names(suggestions):
    return [info.name for info, _ in suggestions]


@pytest.fixture(autouse=True)
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_rgb_8bit_image_gets_3dhistech_face_first():
    got = suggest_models(np.zeros((256, 256, 3), np.uint8))
    assert names(got) == ["DGNO_3DHistech_Face", "DGNO_3DHistech_Cell"]
    assert all("RGB" in reason for _, reason in got)
    rgba = suggest_models(da.zeros((4, 512, 512, 4), dtype=np.uint8, chunks=(1, 512, 512, 4)))
    assert names(rgba)[0] == "DGNO_3DHistech_Face"


def test_rgb_flag_from_a_layer_description_wins_over_the_shape():
    assert names(suggest_models({"shape": (64, 64, 3), "dtype": "float32", "rgb": True}))[0] == "DGNO_3DHistech_Face"
    gray = names(suggest_models({"shape": (10, 64, 3), "dtype": "uint8", "rgb": False}))
    assert gray[0].startswith("DGNO_BBBC006") and "DGNO_3DHistech_Face" not in gray


@pytest.mark.parametrize(
    "description, first",
    [
        ({"name": "plate1_A01_s1_w1CD0AB.tif"}, "DGNO_BBBC006_w1_Face"),  # BBBC006 file name, Hoechst channel
        ({"name": "stack", "channel_names": ["Hoechst 33342"]}, "DGNO_BBBC006_w1_Face"),
        ({"name": "cells", "metadata": {"OME": {"Channel": [{"Name": "DAPI"}]}}}, "DGNO_BBBC006_w1_Face"),
        ({"name": "plate1_A01_s1_w2B1D2F.tif"}, "DGNO_BBBC006_w2_Face"),
        ({"name": "F-actin (Phalloidin-488)"}, "DGNO_BBBC006_w2_Face"),
        ({"name": "ch1", "metadata": {"stain": "LifeAct-GFP"}}, "DGNO_BBBC006_w2_Face"),
    ],
)
def test_single_channel_stain_picks_w1_or_w2(description, first):
    got = suggest_models({"shape": (5, 520, 696), "dtype": "uint16", **description})
    assert names(got)[0] == first
    stain_word_shown = any(w in got[0][1] for w in ("w1", "hoechst", "dapi", "w2", "actin", "phalloidin", "lifeact"))
    assert stain_word_shown, got[0][1]
    other = "w2" if "w1" in first else "w1"
    assert names(got).index(f"DGNO_BBBC006_{other}_Face") > names(got).index(first.replace("Face", "Cell"))


def test_unnamed_fluorescence_defaults_to_w1_and_lists_demo_after_the_official_models():
    got = suggest_models(np.zeros((64, 64), np.uint16))
    assert names(got) == [
        "DGNO_BBBC006_w1_Face", "DGNO_BBBC006_w1_Cell", "DGNO_BBBC006_w2_Face", "DGNO_BBBC006_w2_Cell", "demo",
    ]
    assert "no stain named" in got[0][1]


def test_words_are_matched_as_words():
    # "w10" is not w1, "shear" does not contain the H&E word "he"; "inactive" is no stain
    got = suggest_models({"shape": (64, 64), "dtype": "uint16", "name": "w10 shear inactive"})
    assert "no stain named" in got[0][1]


def test_ambiguous_last_axis_of_three_keeps_both_readings():
    got = names(suggest_models(np.zeros((3, 64, 64), np.float32).transpose(1, 2, 0)))
    assert got[0] == "DGNO_BBBC006_w1_Face" and got[-2:] == ["DGNO_3DHistech_Face", "DGNO_3DHistech_Cell"]
    named = suggest_models({"shape": (64, 64, 3), "dtype": "float32", "name": "H&E section"})
    assert names(named)[0] == "DGNO_3DHistech_Face"


def test_reasons_say_whether_weights_are_available_offline(tmp_path, monkeypatch):
    got = {i.name: r for i, r in suggest_models(np.zeros((64, 64), np.uint16))}
    assert "not downloaded yet" in got["DGNO_BBBC006_w1_Face"]
    weights = tmp_path / "demo.safetensors"
    weights.write_bytes(b"x")
    demo = dataclasses.replace(registry.DEMO_MODEL, local_path=str(weights))
    monkeypatch.setattr(registry, "MODELS", (*registry.OFFICIAL_MODELS, demo))
    got = {i.name: r for i, r in suggest_models(np.zeros((64, 64), np.uint16))}
    assert "bundled, works offline" in got["demo"]


class FakeLayer:
    """The attributes suggest_models reads from a napari Image layer (no napari needed)."""

    def __init__(self, data, name, rgb, metadata=None):
        self.data, self.name, self.rgb, self.metadata = data, name, rgb, metadata or {}
        self.dtype = data[0].dtype if isinstance(data, list) else data.dtype


def test_napari_layer_like_objects_and_multiscale_data():
    pyramid = [np.zeros((512, 512, 3), np.uint8), np.zeros((256, 256, 3), np.uint8)]
    assert names(suggest_models(FakeLayer(pyramid, "slide", rgb=True)))[0] == "DGNO_3DHistech_Face"
    nuclei = FakeLayer(np.zeros((5, 64, 64), np.uint16), "C1-nuclei", rgb=False)
    assert names(suggest_models(nuclei))[0] == "DGNO_BBBC006_w1_Face"


def test_multichannel_with_nuclear_and_actin_names_offers_both():
    description = {"shape": (2, 64, 64), "dtype": "uint16", "channel_axis": 0, "channel_names": ["DAPI", "Phalloidin"]}
    got = suggest_models(description)
    assert names(got)[:2] == ["DGNO_BBBC006_w1_Face", "DGNO_BBBC006_w2_Face"]
    assert "2 channels" in got[0][1]
