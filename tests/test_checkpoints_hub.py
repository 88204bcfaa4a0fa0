"""Registry models through the real huggingface_hub code path, against a real cache layout on disk.

No test here reaches the internet: the cache is built by hand exactly as huggingface_hub lays it out
(blobs/<sha256>, refs/<revision>, snapshots/<commit>/<file> -> ../../blobs/<sha256>), downloads are
served by a local HTTP server standing in for the Hub (HF_ENDPOINT), and a guard records any DNS
look-up so "no network call" is asserted, not assumed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub import constants as hub_constants
from safetensors.torch import save_file

from napari_dgno import registry
from napari_dgno._checkpoints import hub
from napari_dgno.checkpoints import (
    ArchitectureMismatchError,
    ChecksumMismatchError,
    ModelUnavailableError,
    cached_path,
    fetch_model,
    is_cached,
    load_model,
    sha256_file,
)
from napari_dgno.model import DGNO
from napari_dgno.model.configs import tiny_network_g

REPO_FOLDER = "models--Duane245--DGNO"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def populate_hf_cache(cache: Path, name: str, source: Path, commit: str = COMMIT, ref: str | None = "main") -> Path:
    """Put ``source`` into ``cache`` as huggingface_hub would after downloading pretrained/<name>.pth."""
    repo = cache / REPO_FOLDER
    digest = sha256_file(source)
    blob = repo / "blobs" / digest
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(source.read_bytes())
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    pointer = repo / "snapshots" / commit / "pretrained" / f"{name}.pth"
    pointer.parent.mkdir(parents=True, exist_ok=True)
    pointer.symlink_to(Path("..", "..", "..", "blobs", digest))
    return pointer


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """An empty HF cache in tmp_path, offline mode on, no revision override."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv(registry.REVISION_ENV, raising=False)
    return cache


@pytest.fixture
def dns_calls(monkeypatch) -> list:
    """Every host name looked up (each is refused, as on a machine without network)."""
    calls: list = []

    def refuse(host, *args, **kwargs):
        calls.append(host)
        raise socket.gaierror(socket.EAI_NONAME, f"network disabled by the test ({host})")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return calls


@pytest.fixture(scope="module")
def official_w1_face(tmp_path_factory) -> tuple[Path, dict]:
    """A full-size checkpoint with DGNO_BBBC006_w1_Face's architecture and random weights."""
    torch.manual_seed(0)
    params = DGNO(**registry.get_model_info("DGNO_BBBC006_w1_Face").network_g).state_dict()
    path = tmp_path_factory.mktemp("official") / "w1_face.pth"
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in params.items()}
    torch.save({"params": params, "params_ema": ema}, path)
    return path, params


def test_registry_name_loads_offline_from_the_cache_without_network(hf_cache, dns_calls, official_w1_face):
    source, params = official_w1_face
    populate_hf_cache(hf_cache, "DGNO_BBBC006_w1_Face", source)
    assert is_cached("DGNO_BBBC006_w1_Face") and not is_cached("DGNO_BBBC006_w2_Face")

    model = load_model("dgno_bbbc006_w1_face", device="cpu")  # case-insensitive
    assert dns_calls == []
    assert not model.training
    state = model.state_dict()
    for key in ("patch_embed.proj.weight", "conv111.tau", "latent.1.ffn.project_out.weight"):
        torch.testing.assert_close(state[key], params[key], rtol=0, atol=0)
    # the registry's configuration, including what the shapes cannot tell
    assert (model.conv0.flux_mode, model.conv0.boundary_type) == ("avg_jump", "dirichlet")
    entry = registry.get_model_info("DGNO_BBBC006_w1_Face")
    assert model.info == dataclasses.replace(entry, sha256=sha256_file(source))
    ema = load_model("DGNO_BBBC006_w1_Face", device="cpu", weights="params_ema")
    torch.testing.assert_close(ema.patch_embed.proj.weight, params["patch_embed.proj.weight"] + 1)
    assert dns_calls == []


def test_the_cached_file_is_resolved_by_hf_hub_download(hf_cache, monkeypatch):
    source = hf_cache.parent / "w.pth"
    torch.save({"params": {}}, source)
    pointer = populate_hf_cache(hf_cache, "DGNO_BBBC006_w2_Cell", source)
    calls = []
    real = huggingface_hub.hf_hub_download

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        result = real(*args, **kwargs)
        calls[-1] += (result,)
        return result

    monkeypatch.setattr(hub, "hf_hub_download", spy)
    assert fetch_model("DGNO_BBBC006_w2_Cell") == pointer
    (args, kwargs, result), = calls
    assert args == ("Duane245/DGNO", "pretrained/DGNO_BBBC006_w2_Cell.pth")
    assert kwargs["revision"] == "main" and kwargs["local_files_only"] is True
    assert Path(kwargs["cache_dir"]) == hf_cache and Path(result) == pointer


def test_hf_home_and_pinned_revision_are_honoured(tmp_path, monkeypatch):
    home = tmp_path / "hf_home"
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    old, new = tmp_path / "old.pth", tmp_path / "new.pth"
    old.write_bytes(b"old weights")
    new.write_bytes(b"new weights")
    pinned = "f" * 40
    populate_hf_cache(home / "hub", "DGNO_BBBC006_w1_Cell", new, commit="e" * 40)  # refs/main -> newest
    populate_hf_cache(home / "hub", "DGNO_BBBC006_w1_Cell", old, commit=pinned, ref=None)

    monkeypatch.delenv(registry.REVISION_ENV, raising=False)
    assert fetch_model("DGNO_BBBC006_w1_Cell").read_bytes() == b"new weights"
    monkeypatch.setenv(registry.REVISION_ENV, pinned)
    assert fetch_model("DGNO_BBBC006_w1_Cell").read_bytes() == b"old weights"
    assert cached_path("DGNO_BBBC006_w1_Cell").parent.parent.name == pinned


def test_sha256_mismatch_names_both_hashes_and_the_fix(hf_cache, dns_calls):
    fake = hf_cache.parent / "not_the_real_one.pth"
    fake.write_bytes(b"corrupted download")
    pointer = populate_hf_cache(hf_cache, "DGNO_3DHistech_Face", fake)
    published = registry.get_model_info("DGNO_3DHistech_Face").sha256
    attempts = (lambda: load_model("DGNO_3DHistech_Face", device="cpu"), lambda: fetch_model("DGNO_3DHistech_Face"))
    for attempt in attempts:
        with pytest.raises(ChecksumMismatchError) as caught:
            attempt()
        message = str(caught.value)
        assert published in message and hashlib.sha256(b"corrupted download").hexdigest() in message
        assert str(pointer) in message
        assert "napari-dgno models fetch DGNO_3DHistech_Face --force" in message
    assert dns_calls == []


def test_offline_without_the_file_says_how_to_get_it(hf_cache, dns_calls):
    with pytest.raises(ModelUnavailableError) as caught:
        load_model("DGNO_BBBC006_w2_Face", device="cpu")
    message = str(caught.value)
    assert "HF_HUB_OFFLINE" in message and str(hf_cache) in message
    assert "napari-dgno models fetch DGNO_BBBC006_w2_Face" in message
    assert "load_model('/path/to/DGNO_BBBC006_w2_Face.pth')" in message
    assert dns_calls == []
    with pytest.raises(ModelUnavailableError, match=r"cannot re-download.*HF_HUB_OFFLINE"):
        fetch_model("DGNO_BBBC006_w2_Face", force=True)


def test_online_without_network_is_a_clear_error(hf_cache, dns_calls, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)  # as if never set when napari started
    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda seconds: None)  # skip retry back-off
    with pytest.raises(ModelUnavailableError) as caught:
        fetch_model("DGNO_BBBC006_w1_Face")
    message = str(caught.value)
    assert "could not download DGNO_BBBC006_w1_Face" in message and "network disabled by the test" in message
    assert "napari-dgno models fetch DGNO_BBBC006_w1_Face" in message
    assert "huggingface.co" in dns_calls  # it did try the Hub


def test_wrong_architecture_in_the_cache_gives_a_short_report(hf_cache):
    source = hf_cache.parent / "gray_tiny.pth"
    torch.save({"params": DGNO(**tiny_network_g(1)).state_dict()}, source)
    populate_hf_cache(hf_cache, "DGNO_3DHistech_Cell", source)
    with pytest.raises(ArchitectureMismatchError) as caught:
        load_model("DGNO_3DHistech_Cell", device="cpu")
    message = str(caught.value)
    assert "patch_embed.proj.weight: file [32, 1, 3, 3] vs network [48, 3, 3, 3]" in message
    assert "not a DGNO_3DHistech_Cell checkpoint" in message and "--force" in message
    assert len(message.splitlines()) <= 6 and len(message) < 2000


@pytest.fixture
def demo_at(monkeypatch):
    """Point the registry's demo entry at a given file."""

    def point(path: Path) -> None:
        demo = dataclasses.replace(registry.DEMO_MODEL, local_path=str(path))
        monkeypatch.setattr(registry, "MODELS", (*registry.OFFICIAL_MODELS, demo))

    return point


def test_demo_model_loads_from_its_bundled_file_or_says_it_is_missing(tmp_path, hf_cache, dns_calls, demo_at):
    demo_at(tmp_path / "absent.safetensors")
    assert not is_cached("demo")
    with pytest.raises(ModelUnavailableError, match="demo weights are not installed"):
        load_model("demo", device="cpu")

    weights = tmp_path / "demo_dgno.safetensors"
    state = DGNO(**registry.DEMO_NETWORK_G).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
    demo_at(weights)
    model = load_model("Demo", device="cpu")
    assert model.info.name == "demo" and model.info.sha256 == sha256_file(weights)
    assert model.config["num_blocks"] == registry.DEMO_NETWORK_G["num_blocks"]
    assert is_cached("demo") and dns_calls == []


def test_the_installed_demo_entry_is_consistent():
    if registry.DEMO_WEIGHTS.is_file():
        assert load_model("demo", device="cpu").info.name == "demo"
    else:
        with pytest.raises(ModelUnavailableError, match="demo weights are not installed"):
            load_model("demo", device="cpu")


class _FakeHub:
    """A local stand-in for huggingface.co serving one file (HEAD with Hub headers, GET with the bytes)."""

    def __init__(self, payload: bytes):
        self.payload, self.gets = payload, []
        hub_ = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _headers(self):
                if "/resolve/" not in self.path:
                    self.send_response(404)
                    self.end_headers()
                    return False
                self.send_response(200)
                self.send_header("X-Repo-Commit", COMMIT)
                self.send_header("ETag", f'"{hashlib.sha256(hub_.payload).hexdigest()}"')
                self.send_header("Content-Length", str(len(hub_.payload)))
                self.end_headers()
                return True

            def do_HEAD(self):
                self._headers()

            def do_GET(self):
                if self._headers():
                    hub_.gets.append(self.path)
                    self.wfile.write(hub_.payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def fake_hub(hf_cache, monkeypatch):
    hub_server = _FakeHub(os.urandom(300_000))
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    yield hub_server
    hub_server.server.shutdown()


def test_fetch_downloads_into_the_cache_with_progress(fake_hub, hf_cache):
    seen = []
    path = fetch_model("DGNO_BBBC006_w1_Cell", progress=lambda done, total: seen.append((done, total)))
    size = len(fake_hub.payload)
    assert path.read_bytes() == fake_hub.payload
    assert path == hf_cache / REPO_FOLDER / "snapshots" / COMMIT / "pretrained" / "DGNO_BBBC006_w1_Cell.pth"
    assert path.is_symlink() and path.resolve().parent.name == "blobs"
    assert seen[-1] == (size, size) and all(t == size for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)

    fetch_model("DGNO_BBBC006_w1_Cell")  # cached: metadata check only
    assert len(fake_hub.gets) == 1
    fetch_model("DGNO_BBBC006_w1_Cell", force=True)
    assert len(fake_hub.gets) == 2


def test_a_download_can_be_cancelled_from_the_progress_callback(fake_hub):
    def cancel(done, total):
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fetch_model("DGNO_BBBC006_w2_Cell", progress=cancel)
    assert not is_cached("DGNO_BBBC006_w2_Cell")


def test_a_downloaded_file_is_verified_against_the_published_sha(fake_hub, monkeypatch):
    good = hashlib.sha256(fake_hub.payload).hexdigest()
    entry = dataclasses.replace(registry.get_model_info("DGNO_3DHistech_Cell"), sha256=good)
    monkeypatch.setattr(registry, "MODELS", tuple(entry if m.name == entry.name else m for m in registry.MODELS))
    assert sha256_file(fetch_model("DGNO_3DHistech_Cell")) == good
    with pytest.raises(ChecksumMismatchError):
        fetch_model("DGNO_3DHistech_Face")  # its published sha256 is not this payload's


def test_online_mode_falls_back_to_the_cache_when_the_hub_is_unreachable(hf_cache, dns_calls, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    source = hf_cache.parent / "w.pth"
    source.write_bytes(b"cached weights")
    pointer = populate_hf_cache(hf_cache, "DGNO_BBBC006_w2_Face", source)
    assert fetch_model("DGNO_BBBC006_w2_Face") == pointer
    assert "huggingface.co" in dns_calls  # it asked the Hub for a newer revision first
