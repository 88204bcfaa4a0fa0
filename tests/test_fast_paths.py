"""Fast inference paths: the scan custom op, per-block torch.compile, CUDA-graph replay, accelerate()."""

from __future__ import annotations

import pytest
import torch
from model_utils import randomized
from test_scan_dispatch import _inputs
from torch._subclasses.fake_tensor import FakeTensorMode

from napari_dgno.model import DGNO, scan
from napari_dgno.model.assm import EncoderBlock
from napari_dgno.model.configs import tiny_network_g
from napari_dgno.model.dg import DGWindowOperator
from napari_dgno.model.fast import (
    GRAPH_SAFE_SCANS,
    CudaGraphForward,
    accelerate,
    compile_blocks,
    compile_network,
    compiled_blocks,
    compiled_network,
    default_compile_scope,
)
from napari_dgno.model.scan_op import selective_scan_op

OP_NAME = "napari_dgno.selective_scan"


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    """Every test compiles from scratch (graph counts must not depend on test order)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def _tiny(seed: int = 0, **overrides) -> DGNO:
    torch.manual_seed(seed)
    return randomized(DGNO(**tiny_network_g(**overrides)), seed=seed).eval()


class _Counting:
    """A Dynamo backend that records every graph and runs it through AOT autograd (aot_eager)."""

    def __init__(self):
        self.graphs: list[torch.fx.GraphModule] = []
        self._aot = torch._dynamo.lookup_backend("aot_eager")

    def __call__(self, gm, example_inputs):
        self.graphs.append(gm)
        return self._aot(gm, example_inputs)

    def scan_backends(self) -> list[str]:
        """The backend argument of every scan custom-op call in the recorded graphs."""
        return [n.args[-1] for gm in self.graphs for n in gm.graph.nodes if OP_NAME in str(n.target)]

    def scan_calls(self) -> int:
        return len(self.scan_backends())


# --- the custom op -----------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_custom_op_equals_the_dispatcher(backend, dtype):
    args = _inputs(b=2, d=4, length=70, dtype=dtype)
    out = selective_scan_op(*args, True, backend)
    ref = scan.selective_scan(*args, backend=backend)
    assert out.dtype == ref.dtype == dtype
    assert torch.equal(out, ref)
    no_optional = selective_scan_op(*args[:5], None, None, False, backend)
    assert torch.equal(no_optional, scan.selective_scan(*args[:5], None, None, False, backend=backend))


@pytest.mark.parametrize(
    "dtype, backend, expected",
    [
        (torch.float32, "torch", torch.float32),
        (torch.float64, "torch", torch.float64),
        (torch.float64, "reference", torch.float64),
        (torch.float64, "triton", torch.float32),  # the CUDA kernels always return float32
        (torch.bfloat16, "mamba", torch.float32),
        (torch.bfloat16, "torch", torch.float32),
    ],
)
def test_fake_kernel_gives_shape_and_dtype(dtype, backend, expected):
    with FakeTensorMode():
        args = [t.to(dtype) for t in _inputs(b=3, d=5, length=40)]
        out = torch.ops.napari_dgno.selective_scan(*args, True, backend)
    assert out.shape == (3, 5, 40) and out.dtype == expected
    assert out.is_contiguous()


def test_opcheck_passes():
    for dtype in (torch.float32, torch.float64):
        args = _inputs(b=2, d=3, length=33, dtype=dtype)
        torch.library.opcheck(selective_scan_op, (*args, True, "torch"))
        torch.library.opcheck(selective_scan_op, (*args[:5], None, None, False, "reference"))


def test_custom_op_refuses_an_unresolved_backend():
    with pytest.raises(ValueError, match="resolved backend"):
        selective_scan_op(*_inputs(), True, "auto")


def test_compiled_dispatcher_calls_the_custom_op():
    args = _inputs(b=2, d=4, length=64)
    backend = _Counting()
    compiled = torch.compile(scan.selective_scan, backend=backend, fullgraph=True, dynamic=False)
    with torch.no_grad():
        out = compiled(*args)
        assert backend.scan_backends() == ["torch"]  # auto, resolved when compiling
        torch._dynamo.reset()
        with scan.use_backend("reference"):
            forced = compiled(*args)
    assert backend.scan_backends() == ["torch", "reference"]
    assert torch.equal(out, scan.selective_scan(*args))
    assert torch.equal(forced, scan.selective_scan(*args, backend="reference"))


def test_compiled_scan_with_gradients_runs_eagerly_and_fullgraph_names_inference():
    args = [t.requires_grad_() for t in _inputs(b=1, d=3, length=40)]
    out = torch.compile(scan.selective_scan, backend="aot_eager")(*args)
    grads = torch.autograd.grad(out.square().sum(), args)
    ref = scan.selective_scan(*args)
    ref_grads = torch.autograd.grad(ref.square().sum(), args)
    assert torch.equal(out, ref)
    assert all(torch.allclose(g, r) for g, r in zip(grads, ref_grads))
    torch._dynamo.reset()
    with pytest.raises(RuntimeError, match="inference only"):
        torch.compile(scan.selective_scan, backend="aot_eager", fullgraph=True)(*args)


# --- compile_blocks ----------------------------------------------------------------------------


def test_compile_blocks_equals_eager_without_graph_breaks_and_reuses_same_shapes():
    model = _tiny(num_blocks=[2, 1, 1, 1])
    keys = list(model.state_dict())
    x = torch.rand(1, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = model(x)
        backend = _Counting()
        assert compile_blocks(model, backend=backend, fullgraph=True) is model
        out = model(x)
        # 4 encoder widths + 3 DG widths: the second level-1 block and conv1/conv11/conv111 reuse.
        assert len(backend.graphs) == 7
        assert backend.scan_calls() == 4
        again = model(torch.rand(1, 1, 64, 64))
        assert len(backend.graphs) == 7  # same shapes: no recompilation
    assert len(compiled_blocks(model)) == 5 + 6
    assert list(model.state_dict()) == keys
    assert isinstance(out, list) and len(out) == 3
    for o, r in zip(out, ref):  # the DG products are sum reductions when compiled (model/fusible.py): 1e-6 rounding
        assert o.shape == r.shape and _rel(o, r) < 1e-5
    assert _rel(again[-1], out[-1]) > 1e-3  # new data, new result


def test_compiled_dg_operator_under_bf16_autocast_equals_eager():
    torch.manual_seed(3)
    op = DGWindowOperator(32, "face", 8, "avg_jump", boundary_type="dirichlet").eval()
    x = torch.randn(2, 32, 32, 32)
    with torch.no_grad():
        fp32 = op(x)
        with torch.autocast("cpu", torch.bfloat16):
            ref = op(x)
            op.compile(backend="aot_eager", fullgraph=True, dynamic=False)
            out = op(x)
    assert _rel(ref, fp32) > 1e-4  # really ran in bf16
    assert _rel(out, ref) < 1e-6


def test_inductor_compiles_an_encoder_block_close_to_eager():
    torch.manual_seed(4)
    block = randomized(torch.nn.Sequential(EncoderBlock(32, 2.66, False, "WithBias")), seed=4)[0].eval()
    x = torch.randn(1, 32, 32, 32)
    with torch.inference_mode():
        ref = block(x)
        block.compile(fullgraph=True, dynamic=False)  # default backend: inductor (C++ on the CPU)
        out = block(x)
    assert _rel(out, ref) < 1e-5


def test_compile_blocks_needs_dgno_blocks():
    with pytest.raises(ValueError, match="no EncoderBlock or DGWindowOperator"):
        compile_blocks(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no EncoderBlock or DGWindowOperator"):
        compile_network(torch.nn.Linear(2, 2))


# --- compile_network (what accelerate compiles on CUDA) ------------------------------------------


def test_compile_network_is_one_graph_equal_to_eager_and_recompiles_per_shape():
    model = _tiny(5, num_blocks=[2, 1, 1, 1])
    keys = list(model.state_dict())
    gen = torch.Generator().manual_seed(5)
    x, y, wide = torch.rand(2, 1, 64, 64, generator=gen), torch.rand(2, 1, 64, 64, generator=gen), torch.rand(1, 1, 64, 96)
    with torch.inference_mode():
        ref, ref_y, ref_wide = model(x), model(y), model(wide)
        backend = _Counting()
        # fullgraph: one graph break anywhere in the forward would raise here.
        assert compile_network(model, backend=backend, fullgraph=True) is model
        out, out_y = model(x), model(y)
        assert len(backend.graphs) == 1 and backend.scan_calls() == 5  # every ASSM's scan, one graph
        out_wide = model(wide)
        assert len(backend.graphs) == 2  # a new shape: a second graph (static shapes)
    assert compiled_network(model) and not compiled_blocks(model)
    assert list(model.state_dict()) == keys
    for got, want in ((out, ref), (out_y, ref_y), (out_wide, ref_wide)):
        assert isinstance(got, list) and len(got) == 3
        for o, r in zip(got, want):
            assert o.shape == r.shape and _rel(o, r) < 1e-5
    assert _rel(out_y[-1], out[-1]) > 1e-3  # new data, new result


def test_compile_scope_follows_the_device_unless_given():
    assert default_compile_scope("cuda") == "network" and default_compile_scope("cpu") == "blocks"
    model = _tiny()
    with pytest.raises(ValueError, match="choose one of blocks, network"):
        accelerate(model, "cpu", "compile", compile_scope="everything")
    assert accelerate(model, "cpu", "compile", compile_scope="network", compile_options={"backend": "aot_eager"}) is model
    assert compiled_network(model) and not compiled_blocks(model)


# --- accelerate() and CudaGraphForward argument checks (CPU) ---------------------------------


def test_accelerate_argument_errors():
    model = _tiny()
    with pytest.raises(ValueError, match="choose one of none, graphs, compile, compile\\+graphs"):
        accelerate(model, "cpu", "fastest")
    for mode in ("graphs", "compile+graphs"):
        with pytest.raises(ValueError, match="needs a CUDA device"):
            accelerate(model, "cpu", mode)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        accelerate(lambda x: x, "cpu", "compile")
    assert accelerate(model, "cpu", "none") is model and not compiled_blocks(model)
    assert accelerate(model, "cpu", "compile", compile_options={"backend": "aot_eager"}) is model
    assert len(compiled_blocks(model)) == 10


def test_graph_forward_refuses_training_gumbel_and_cpu_inputs():
    model = _tiny()
    model.train()
    with pytest.raises(ValueError, match="model.eval"):
        CudaGraphForward(model)
    model.eval()
    model.routing = "gumbel"
    with pytest.raises(ValueError, match="routing = 'argmax'"):
        CudaGraphForward(model)
    model.routing = "argmax"
    wrapped = CudaGraphForward(model)
    assert wrapped.in_channels == 1 and wrapped.routing == "argmax"  # attributes read from the model
    with pytest.raises(ValueError, match="CUDA input"):
        wrapped(torch.rand(1, 1, 32, 32))
    model.routing = "gumbel"  # changed after wrapping: refused at the call
    with pytest.raises(ValueError, match="routing"):
        wrapped(torch.rand(1, 1, 32, 32))


# --- CUDA graphs (GPU) -------------------------------------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cuda_model(seed: int = 0) -> DGNO:
    if scan.resolve_backend(None, "cuda") not in GRAPH_SAFE_SCANS:
        pytest.skip("no CUDA-graph-safe scan backend (triton or mamba) here")
    return _tiny(seed).cuda()


@pytest.mark.gpu
@needs_cuda
def test_graph_forward_equals_eager_and_replays_new_data():
    model = _cuda_model()
    wrapped = accelerate(model, "cuda", "graphs")
    gen = torch.Generator(device="cuda").manual_seed(0)
    x1, x2 = (torch.rand(2, 1, 96, 64, device="cuda", generator=gen) for _ in range(2))
    with torch.inference_mode():
        ref1, ref2 = model(x1), model(x2)
        out1 = wrapped(x1)
        out2 = wrapped(x2)
        out1_again = wrapped(x1)
    assert wrapped.num_graphs == 1
    for out, ref in ((out1, ref1), (out2, ref2), (out1_again, ref1)):
        assert isinstance(out, list) and len(out) == 3
        for o, r in zip(out, ref):
            assert o.shape == r.shape and _rel(o, r) < 1e-5
    assert _rel(out2[-1], out1[-1]) > 1e-3
    assert out1[-1].data_ptr() != out1_again[-1].data_ptr()  # clones, not the graph's buffers


@pytest.mark.gpu
@needs_cuda
def test_graph_forward_one_graph_per_shape_lru_and_release():
    model = _cuda_model(1)
    wrapped = CudaGraphForward(model, max_graphs=2)
    xs = [torch.rand(1, 1, s, s, device="cuda") for s in (64, 96, 128)]
    with torch.inference_mode():
        for x in xs[:2]:
            assert _rel(wrapped(x)[-1], model(x)[-1]) < 1e-5
        assert wrapped.num_graphs == 2
        assert _rel(wrapped(xs[2])[-1], model(xs[2])[-1]) < 1e-5
        assert wrapped.num_graphs == 2  # the least recently used (64) was dropped
        assert _rel(wrapped(xs[0])[-1], model(xs[0])[-1]) < 1e-5  # recaptured
    wrapped.release()
    assert wrapped.num_graphs == 0


@pytest.mark.gpu
@needs_cuda
def test_graph_forward_under_autocast_and_refuses_gumbel():
    model = _cuda_model(2)
    wrapped = accelerate(model, "cuda", "graphs")
    x = torch.rand(2, 1, 64, 64, device="cuda")
    with torch.inference_mode():
        fp32 = wrapped(x)
        with torch.autocast("cuda", torch.bfloat16):
            ref = model(x)
            out = wrapped(x)
            out_again = wrapped(x)
    assert wrapped.num_graphs == 2  # the autocast state is part of the key
    assert _rel(out[-1], ref[-1]) < 1e-5 and torch.equal(out[-1], out_again[-1])
    assert not torch.equal(out[-1], fp32[-1])  # really the bf16 graph
    model.routing = "gumbel"
    with pytest.raises(ValueError, match="routing"):
        wrapped(x)


@pytest.mark.gpu
@needs_cuda
def test_compile_plus_graphs_equals_eager():
    model = _cuda_model(3)
    x = torch.rand(2, 1, 64, 64, device="cuda")
    with torch.inference_mode():
        ref = model(x)
        wrapped = accelerate(model, "cuda", "compile+graphs")
        out = wrapped(x)
        out2 = wrapped(x * 0.5)
        ref2 = model(x * 0.5)  # the compiled network without the graph
    assert compiled_network(model)  # on CUDA accelerate compiles the whole network
    # Inductor's fused kernels round differently (~1e-6); with random weights the router's logits hold
    # near-ties, so a few tokens pick another prompt and the outputs move by 1e-3 to 1e-2 (measured on
    # an H200: 1.0e-3, then 1.03e-2 with the compiled DG products of model/fusible.py). A broken
    # compile moves them by O(1); block-level exactness is tested in test_fusible.py.
    for o, r in zip(out, ref):
        assert _rel(o, r) < 5e-2
    assert _rel(out2[-1], ref2[-1]) < 1e-5  # the same compiled network, with and without the graph
