"""deblur(accelerate=...): the fast paths give the plain path's result, and wrong choices are refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_dgno import DGNO
from napari_dgno.cli.deblur_cmd import ACCELERATIONS as CLI_ACCELERATIONS
from napari_dgno.engine import deblur
from napari_dgno.engine.acceleration import ACCELERATIONS, accelerated, resolve_acceleration
from napari_dgno.model.configs import tiny_network_g

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.fixture(scope="module")
def tiny_dgno():
    torch.manual_seed(0)
    return DGNO(**tiny_network_g()).eval()


def test_cli_offers_the_engine_modes():
    assert CLI_ACCELERATIONS == ACCELERATIONS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"accelerate": "fastest"}, "accelerate must be one of"),
        ({"accelerate": "graphs"}, "need a CUDA GPU"),
        ({"accelerate": "compile+graphs"}, "need a CUDA GPU"),
    ],
)
def test_wrong_acceleration_is_refused_before_work(tiny_dgno, kwargs, message):
    image = np.zeros((64, 64), np.float32)
    with pytest.raises(ValueError, match=message):
        deblur(image, tiny_dgno, device="cpu", **kwargs)


def test_auto_is_plain_on_cpu_and_custom_models_cannot_be_compiled(tiny_dgno):
    cpu = torch.device("cpu")
    assert resolve_acceleration("auto", tiny_dgno, cpu) == "none"
    assert accelerated(tiny_dgno, cpu, "auto") is tiny_dgno

    def identity(x):
        return x

    assert resolve_acceleration("auto", identity, cpu) == "none"
    with pytest.raises(ValueError, match="accelerate='none' for your own model"):
        deblur(np.ones((64, 64), np.float32), identity, device="cpu", accelerate="compile")


def test_compile_leaves_the_users_model_uncompiled(tiny_dgno):
    from napari_dgno.model.fast import compiled_blocks

    cpu = torch.device("cpu")
    fast = accelerated(tiny_dgno, cpu, "compile")  # wraps only; compiling happens on the first call
    assert fast is not tiny_dgno and compiled_blocks(fast) and not compiled_blocks(tiny_dgno)
    assert accelerated(tiny_dgno, cpu, "compile") is fast  # built once per model, mode and device
    for key, value in fast.state_dict().items():
        assert torch.equal(value, tiny_dgno.state_dict()[key])


def test_gumbel_routing_never_gets_graphs(tiny_dgno):
    tiny_dgno.routing = "gumbel"
    try:
        assert resolve_acceleration("auto", tiny_dgno, torch.device("cuda")) == "none"
    finally:
        tiny_dgno.routing = "argmax"


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("mode", ["graphs", "compile+graphs"])
def test_cuda_fast_paths_equal_the_plain_path(mode):
    torch.manual_seed(0)
    model = DGNO(**tiny_network_g()).eval()
    rng = np.random.default_rng(3)
    image = (rng.random((3, 200, 170)) * 1000).astype(np.uint16)  # 3 planes: a short last batch
    plain = deblur(image, model, device="cuda", tile=128, overlap=32, batch_size=4, accelerate="none")
    fast = deblur(image, model, device="cuda", tile=128, overlap=32, batch_size=4, accelerate=mode)

    def close(a, b):  # graphs replay the same kernels: equal; compiled kernels round differently and
        # flip a few near-tie routing choices of the random network (~1e-3 relative, see test_fast_paths)
        if mode == "graphs":
            return np.abs(a - b).max() < 1e-4 * float(np.abs(b).max())
        return np.linalg.norm(a - b) < 1e-2 * np.linalg.norm(b)

    assert close(fast, plain)
    wrapper = accelerated(model, torch.device("cuda"), mode)
    assert wrapper.num_graphs == 1  # the padded last batch replayed the same graph
    again = deblur(image[::-1].copy(), model, device="cuda", tile=128, overlap=32, batch_size=4, accelerate=mode)
    reference = deblur(image[::-1].copy(), model, device="cuda", tile=128, overlap=32, batch_size=4,
                       accelerate="none")
    assert close(again, reference)  # new data through the captured graph


@pytest.mark.gpu
@needs_cuda
def test_auto_uses_graphs_on_cuda():
    torch.manual_seed(1)
    model = DGNO(**tiny_network_g()).eval()
    assert resolve_acceleration("auto", model, torch.device("cuda")) == "graphs"
    image = np.random.default_rng(4).random((96, 96)).astype(np.float32)
    out = deblur(image, model, device="cuda", tile=64, overlap=16)
    assert np.isfinite(out).all()
    assert accelerated(model, torch.device("cuda"), "auto").num_graphs == 1
