"""The fused inference forms (depthwise 3x3 + gate in Triton, small matmuls under compile) against
the eager forms they replace.

Kernel tests run in Triton's CPU interpreter with ``TRITON_INTERPRET=1`` (CI installs no Triton, so
they skip there); tests marked ``gpu`` run on CUDA at DGNO's sizes, inside compiled blocks and CUDA
graphs. The dispatch rules (eager form on CPU and whenever gradients are needed) are tested on CPU.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from napari_dgno.model import fusible
from napari_dgno.model.assm import EncoderBlock
from napari_dgno.model.dg import DGWindowOperator
from napari_dgno.model.layers import GatedDconvFeedForward

INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
HAVE_TRITON = importlib.util.find_spec("triton") is not None
CUDA = torch.cuda.is_available()
interpreter_only = pytest.mark.skipif(
    not (HAVE_TRITON and INTERPRET), reason="needs triton and TRITON_INTERPRET=1 (Triton's CPU interpreter)"
)
on_gpu = pytest.mark.skipif(not (HAVE_TRITON and CUDA and not INTERPRET), reason="needs triton and CUDA")


def _conv(channels: int, bias: bool, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    conv = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=bias)
    with torch.no_grad():
        conv.weight.mul_(3.0)  # make every tap matter
    return conv


@interpreter_only
@pytest.mark.parametrize(("gate", "channels", "bias"), [("gelu", 10, False), ("gelu", 6, True),
                                                        ("sigmoid", 5, True), ("sigmoid", 4, False)])
@pytest.mark.parametrize(("h", "w"), [(1, 1), (7, 9), (16, 64), (33, 70)])
def test_kernel_matches_the_eager_form_at_edges_and_odd_sizes(gate, channels, bias, h, w):
    conv = _conv(channels, bias)
    x = torch.randn(2, channels, h, w)
    with torch.no_grad():
        ref = fusible.depthwise_gate_reference(x, conv, gate)
        out = fusible.depthwise_gate_triton(x, conv.weight, conv.bias, gate)
    assert out.shape == ref.shape and out.dtype == x.dtype
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


@interpreter_only
@pytest.mark.parametrize("kernel", ["rows", "tiles"])
@pytest.mark.parametrize(("gate", "channels", "bias"), [("gelu", 10, False), ("gelu", 254, True), ("gelu", 96, True),
                                                        ("sigmoid", 5, True), ("sigmoid", 96, False),
                                                        ("sigmoid", 48, True)])
@pytest.mark.parametrize(("h", "w"), [(1, 1), (7, 9), (33, 70)])
def test_channels_last_kernel_matches_and_keeps_the_layout(gate, channels, bias, h, w, kernel, monkeypatch):
    """DGNO's 1x1 convolutions return channels-last maps (their input is a permuted layer norm). The
    rows kernel takes only maps of whole 16-byte vectors (here 96 channels, and 48 with a part-filled
    last channel block); the others fall back to the tiles kernel."""
    monkeypatch.setitem(fusible.CL_KERNEL, gate, kernel)
    if kernel == "rows":  # strips narrower and shorter than the maps: every edge of a strip is crossed
        monkeypatch.setitem(fusible.ROW_TILES, gate, (16, 32, 4, 4))
    conv = _conv(channels, bias)
    x = torch.randn(2, h, w, channels).permute(0, 3, 1, 2)
    with torch.no_grad():
        ref = fusible.depthwise_gate_reference(x, conv, gate)
        out = fusible.depthwise_gate_triton(x, conv.weight, conv.bias, gate)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def _gate_of_known_values(gate: str, kernel: str, device: str, monkeypatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(kernel output, float64 truth) for ``x`` from -14 to 14 and a few huge values: a depthwise
    weight of only the centre tap (so dw(x) = x) and, for gelu, a second half of ones, so the output
    is gelu(x) (or x * sigmoid(x)) itself. ``kernel``: ``nchw``, ``tiles`` or ``rows``; 16 copies of
    the values (channels), so that the channels-last map is one the rows kernel takes."""
    if kernel != "nchw":
        monkeypatch.setitem(fusible.CL_KERNEL, gate, kernel)
    x = torch.cat([torch.linspace(-14, 14, 2801, dtype=torch.float64),
                   torch.tensor([-1e4, -60.0, -20.0, -1e-30, 0.0, 1e-30, 20.0, 60.0, 1e4], dtype=torch.float64)])
    side, copies = 60, 16  # 3600 pixels >= the values, the rest zeros
    image = torch.zeros(side * side, dtype=torch.float64)
    image[: x.numel()] = x
    halves = [image, torch.ones_like(image)] if gate == "gelu" else [image]
    maps = torch.stack(halves).repeat_interleave(copies, 0).reshape(1, len(halves) * copies, side, side).float()
    if kernel != "nchw":
        maps = maps.contiguous(memory_format=torch.channels_last)
    if kernel == "rows":
        assert fusible._vector_aligned(copies, maps)  # the rows kernel's condition, so it really runs
    weight = torch.zeros(len(halves) * copies, 1, 3, 3)
    weight[:, 0, 1, 1] = 1.0
    out = fusible.depthwise_gate_triton(maps.to(device), weight.to(device), None, gate).cpu().double()
    truth = 0.5 * image * torch.special.erfc(-image / 2**0.5) if gate == "gelu" else image * torch.sigmoid(image)
    return out.reshape(copies, -1), truth.expand(copies, -1)


def _assert_gate_precision(out: torch.Tensor, truth: torch.Tensor) -> None:
    """1e-5 relative down to gelu(-8) = -5e-15 (torch's own float32 gelu, 0.5 x (1 + erf(x / sqrt 2)),
    returns 0 from x = -6 down), 1e-4 relative in the deeper tail (a float32 exponent of
    -70 is only good to about 4e-6), 1e-37 absolute (values below float32's normal range)."""
    moderate = truth.abs() > 1e-14
    torch.testing.assert_close(out[moderate], truth[moderate], rtol=1e-5, atol=1e-37)
    torch.testing.assert_close(out, truth, rtol=1e-4, atol=1e-37)


@interpreter_only
@pytest.mark.parametrize("kernel", ["nchw", "tiles", "rows"])
@pytest.mark.parametrize("gate", fusible.GATES)
def test_gate_functions_are_precise_over_the_whole_range(gate, kernel, monkeypatch):
    _assert_gate_precision(*_gate_of_known_values(gate, kernel, "cpu", monkeypatch))


@on_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("kernel", ["nchw", "tiles", "rows"])
@pytest.mark.parametrize("gate", fusible.GATES)
def test_gpu_gate_functions_are_precise_over_the_whole_range(gate, kernel, monkeypatch):
    """The compiled kernels' approximate reciprocal and exp2 (inline PTX) keep the same precision."""
    _assert_gate_precision(*_gate_of_known_values(gate, kernel, "cuda", monkeypatch))


@interpreter_only
def test_kernel_reads_any_strides_and_half_inputs():
    conv = _conv(8, True)
    x = torch.randn(3, 13, 11, 8).permute(0, 3, 1, 2)  # channels-last view
    x[..., 0, 0] = float("nan")  # pixels at the border must not leak into other images
    x = x[1:]
    with torch.no_grad():
        ref = fusible.depthwise_gate_reference(x.contiguous(), conv, "gelu")
        out = fusible.depthwise_gate_triton(x, conv.weight, conv.bias, "gelu")
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5, equal_nan=True)
        half = x.nan_to_num().to(torch.bfloat16)
        out16 = fusible.depthwise_gate_triton(half, conv.weight, conv.bias, "sigmoid")
        ref16 = fusible.depthwise_gate_reference(half.float(), conv, "sigmoid")
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), ref16, rtol=1e-2, atol=1e-2)


@interpreter_only
@pytest.mark.parametrize(("b", "d", "h", "w"), [(2, 96, 16, 16), (1, 5, 3, 7), (3, 130, 8, 9), (1, 3, 1, 5)])
def test_token_gather_kernel_equals_torch_gather(b, d, h, w):
    z = torch.randn(b, h, w, d).permute(0, 3, 1, 2)  # channels-last, as the ASSM's CPE output
    order = torch.stack([torch.randperm(h * w) for _ in range(b)])
    assert torch.equal(fusible.gather_tokens_triton(z, order), fusible.gather_tokens_reference(z, order))
    with pytest.raises(ValueError, match="needs a channels-last"):
        fusible.gather_tokens_triton(z.contiguous(), order)


@interpreter_only
@pytest.mark.parametrize(("dim", "bias"), [(48, False), (12, True)])
def test_feedforward_with_padded_hidden_width_equals_the_module(dim, bias, monkeypatch):
    """The fused GDFN pads the hidden width (127 -> 128 at dim 48) with zero channels: same result."""
    monkeypatch.setattr(fusible, "use_triton", lambda *args: True)  # the CUDA route, on CPU tensors
    torch.manual_seed(1)
    ffn = GatedDconvFeedForward(dim, 2.66, bias).eval()
    hidden = ffn.project_out.weight.shape[1]
    assert fusible.aligned_hidden(hidden) > hidden and fusible.aligned_hidden(hidden) % 32 == 0
    x = torch.randn(2, 9, 11, dim).permute(0, 3, 1, 2)  # channels-last, as the layer norm returns it
    with torch.no_grad():
        a, b = ffn.dwconv(ffn.project_in(x)).chunk(2, dim=1)
        expected = ffn.project_out(torch.nn.functional.gelu(a) * b)
        out = ffn(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert ffn.project_in.weight.shape[0] == 2 * hidden  # the module's parameters are untouched


DG_CASES = [("face", "avg_jump", "dirichlet", 48), ("face", "jump", "neumann", 96), ("cell", "jump", "neumann", 32),
            ("cell", "avg_jump", "dirichlet", 192), ("face", "central", "dirichlet", 48), ("cell", "central", "neumann", 48)]


@interpreter_only
@pytest.mark.parametrize(("variant", "flux", "boundary", "dim"), DG_CASES)
@pytest.mark.parametrize(("h", "w"), [(8, 8), (16, 40), (24, 16)])
def test_dg_operator_kernels_match_the_eager_operator(variant, flux, boundary, dim, h, w, monkeypatch):
    """Every released combination (and central), head widths 2-12, one window up to 3 x 5 windows."""
    torch.manual_seed(h * w + dim)
    op = DGWindowOperator(dim, variant, 8, flux, 0.25, True, boundary).eval()
    with torch.no_grad():  # non-trivial norms and tau
        op.kln.weight.uniform_(0.5, 1.5), op.vln.bias.uniform_(-0.3, 0.3)
        if flux != "central":
            op.tau.fill_(0.4)
    x = torch.randn(2, dim, h, w)
    with torch.no_grad():
        expected = op(x)
        monkeypatch.setattr(fusible, "use_triton", lambda *args: True)
        out = op(x)
        out_cl = op(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_cl, expected, rtol=1e-5, atol=1e-5)


@interpreter_only
def test_dg_operator_kernels_in_bf16_build_the_operators_in_float32(monkeypatch):
    torch.manual_seed(3)
    op = DGWindowOperator(48, "face", 8, "avg_jump", 0.25, True, "dirichlet").eval().to(torch.bfloat16)
    x = torch.randn(1, 48, 16, 24).to(torch.bfloat16)
    with torch.no_grad():
        expected = op(x)
        monkeypatch.setattr(fusible, "use_triton", lambda *args: True)
        out = op(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected.float(), rtol=2e-2, atol=2e-2)


def test_bad_arguments_are_named():
    conv = _conv(5, False)
    x = torch.randn(1, 5, 4, 4)
    with pytest.raises(ValueError, match="unknown gate 'relu'"):
        fusible.depthwise_gate_reference(x, conv, "relu")
    with pytest.raises(ValueError, match="unknown gate 'relu'"):
        fusible.depthwise_gate_triton(x, conv.weight, None, "relu")
    with pytest.raises(ValueError, match="splits the channels in two halves; got 5"):
        fusible.depthwise_gate_triton(x, conv.weight, None, "gelu")
    with pytest.raises(ValueError, match=r"needs a \(6, 1, 3, 3\) weight"):
        fusible.depthwise_gate_triton(torch.randn(1, 6, 4, 4), conv.weight, None, "sigmoid")


def test_dg_kernel_arguments_are_checked_before_launch():
    from napari_dgno.model.dg_fused import dg_attention_triton

    norms = (torch.ones(48), torch.zeros(48))
    args = {"heads": 16, "window": 8, "face": True, "dirichlet": True, "eps": 1e-5, "out_dtype": torch.float32,
            "channels_last": False}
    tau = torch.tensor([0.25])
    with pytest.raises(ValueError, match="unknown flux_mode 'upwind'"):
        dg_attention_triton(torch.randn(1, 144, 8, 8), norms, norms, tau, flux_mode="upwind", **args)
    with pytest.raises(ValueError, match="not a multiple of the 8-pixel window"):
        dg_attention_triton(torch.randn(1, 144, 8, 12), norms, norms, tau, flux_mode="jump", **args)
    with pytest.raises(ValueError, match="3 x a multiple of 16 channels, got 145"):
        dg_attention_triton(torch.randn(1, 145, 8, 8), norms, norms, tau, flux_mode="jump", **args)
    with pytest.raises(ValueError, match="needs a one-element tau"):
        dg_attention_triton(torch.randn(1, 144, 8, 8), norms, norms, None, flux_mode="avg_jump", **args)


def test_dg_kernels_apply_only_to_cuda_inference_outside_compile(monkeypatch):
    """Under torch.compile Inductor's form of the eager code was faster: the kernels stay out of traces."""
    from napari_dgno.model import dg_fused

    x = torch.randn(1, 48, 8, 8)
    assert not dg_fused.applies(x)  # CPU
    monkeypatch.setattr(fusible, "use_triton", lambda *args: True)  # as on a GPU
    assert dg_fused.applies(x)

    @torch.compile(backend="eager", fullgraph=True)
    def traced(t):
        return t + (1.0 if dg_fused.applies(t) else 0.0)

    assert torch.equal(traced(x), x)
    monkeypatch.setattr(dg_fused, "ENABLED", False)
    assert not dg_fused.applies(x)


def test_images_beyond_the_32_bit_index_range_take_the_eager_form(monkeypatch):
    """The kernels index within an image in 32 bits; bigger images (a single 4096 x 4096 tile's GDFN
    map) must get the exact eager result, not overflowed addresses. The limit is lowered to 100
    elements here so that small maps cross it; no kernel runs (no Triton needed)."""
    monkeypatch.setattr(fusible, "use_triton", lambda *args: True)  # as on a GPU
    monkeypatch.setattr(fusible, "MAX_IMAGE_ELEMENTS", 100)
    torch.manual_seed(5)
    x = torch.randn(2, 8, 5, 6).contiguous(memory_format=torch.channels_last)
    ffn = GatedDconvFeedForward(8, 2.66, False).eval()
    op = DGWindowOperator(32, "face", 8, "avg_jump", 0.25, True, "dirichlet").eval()
    x_dg = torch.randn(1, 32, 8, 16)
    order = torch.stack([torch.randperm(30) for _ in range(2)])
    with torch.no_grad():
        a, b = ffn.dwconv(ffn.project_in(x)).chunk(2, dim=1)
        assert torch.equal(ffn(x), ffn.project_out(torch.nn.functional.gelu(a) * b))
        conv = _conv(8, True)
        assert torch.equal(fusible.depthwise_gate(x, conv, "sigmoid"), fusible.depthwise_gate_reference(x, conv, "sigmoid"))
        assert torch.equal(fusible.gather_tokens(x, order), fusible.gather_tokens_reference(x, order))
        dg_out = op(x_dg)
        monkeypatch.setattr(fusible, "use_triton", lambda *args: False)
        assert torch.equal(dg_out, op(x_dg))
    with pytest.raises(ValueError, match="beyond the fused kernels' 32-bit index range"):
        fusible.depthwise_gate_triton(x, conv.weight, None, "gelu")
    with pytest.raises(ValueError, match="beyond the fused kernels' 32-bit index range"):
        fusible.gather_tokens_triton(x, order)
    # channels-last (2, 8, 5, 6): strides (240, 1, 48, 8); every other row: 3 rows 96 elements apart
    assert fusible.image_span(x) == 240 and fusible.image_span(x[:, :, ::2]) == 1 + 7 * 1 + 2 * 96 + 5 * 8


def test_cpu_and_gradients_take_the_eager_form():
    """On CPU the result is bit-identical to the module code it replaced, and training gets gradients."""
    ffn = GatedDconvFeedForward(8, 2.66, False)
    x = torch.randn(2, 8, 9, 9, requires_grad=True)
    a, b = ffn.dwconv(ffn.project_in(x)).chunk(2, dim=1)
    expected = ffn.project_out(torch.nn.functional.gelu(a) * b)
    out = ffn(x)
    assert torch.equal(out, expected)
    out.sum().backward()
    assert x.grad is not None and ffn.dwconv.weight.grad is not None


@pytest.mark.parametrize(("value", "enabled"), [("0", False), ("off", False), ("1", True), ("", True)])
def test_environment_variable_switches_the_fused_forms(value, enabled):
    code = "from napari_dgno.model import fusible; print(fusible.ENABLED)"
    env = {**os.environ, "NAPARI_DGNO_FUSED": value}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(enabled)


def test_small_matmul_is_matmul_when_not_compiling():
    a, b = torch.randn(5, 3, 64), torch.randn(5, 64, 3)
    assert torch.equal(fusible.small_matmul(a, b), a @ b)


def test_dg_operator_compiled_with_the_fused_forms_matches_eager():
    """Under torch.compile (CPU Inductor) the DG operator's products become fused reductions."""
    torch.manual_seed(0)
    op = DGWindowOperator(32, "face", 8, "avg_jump", 0.25, True, "dirichlet").eval()
    x = torch.randn(2, 32, 32, 32)
    with torch.inference_mode():
        ref = op(x)
        out = torch.compile(op, dynamic=False, fullgraph=True)(x)
    # Relative L2: the Galerkin norm divides by the std of 2 numbers, so single values amplify rounding.
    assert float((out - ref).norm() / ref.norm()) < 1e-5


@on_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("channels", "size"), [(254, 512), (508, 256), (192, 128), (2032, 64)])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_gpu_kernel_at_dgno_sizes(dtype, channels, size, layout):
    conv = _conv(channels, True).cuda()
    x = torch.randn(2, channels, size, size, device="cuda", dtype=dtype).contiguous(memory_format=layout)
    with torch.inference_mode():
        for gate in fusible.GATES:
            ref = fusible.depthwise_gate_reference(x.float(), conv, gate)
            out = fusible.depthwise_gate_triton(x, conv.weight, conv.bias, gate)
            assert out.dtype == dtype
            tol = 1e-5 if dtype == torch.float32 else 2e-2
            torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol)


@on_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpu_token_gather_at_dgno_sizes(dtype):
    for c, s in ((96, 512), (768, 64)):
        z = torch.randn(2, c, s, s, device="cuda", dtype=dtype).contiguous(memory_format=torch.channels_last)
        order = torch.argsort(torch.randint(0, 64, (2, s * s), device="cuda"), dim=1, stable=True)
        assert torch.equal(fusible.gather_tokens(z, order), fusible.gather_tokens_reference(z, order))


def _captured_and_replayed(fn, x: torch.Tensor) -> torch.Tensor:
    """``fn(x)`` captured in a CUDA graph (after one warm-up call) and replayed."""
    graph = torch.cuda.CUDAGraph()
    static = x.clone()
    fn(static)
    with torch.cuda.graph(graph):
        replayed = fn(static)
    graph.replay()
    return replayed


@on_gpu
@pytest.mark.gpu
def test_gpu_encoder_block_fused_compiled_and_graphed_matches_eager():
    """One block (its routing is decided before any fused op): eager fused, compiled (fullgraph) and
    replayed from a CUDA graph all agree with the unfused eager block."""
    torch.manual_seed(0)
    block = EncoderBlock(96, 2.66, False, "WithBias").cuda().eval()
    x = torch.randn(2, 96, 64, 64, device="cuda")
    with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # TF32 would dominate
        fusible.ENABLED = False
        try:
            ref = block(x)
        finally:
            fusible.ENABLED = True
        eager = block(x)
        compiled = torch.compile(block, dynamic=False, fullgraph=True)
        out = compiled(x)
        replayed = _captured_and_replayed(compiled, x)
    for result in (eager, out, replayed):
        torch.testing.assert_close(result, ref, rtol=1e-4, atol=1e-4)


@on_gpu
@pytest.mark.gpu
@pytest.mark.parametrize(("dim", "size"), [(48, 512), (96, 256), (192, 128)])
@pytest.mark.parametrize(("variant", "flux", "boundary"), [("face", "avg_jump", "dirichlet"), ("cell", "jump", "neumann")])
def test_gpu_dg_operator_kernels_at_dgno_sizes_compiled_and_graphed(dim, size, variant, flux, boundary):
    """The decoder's three widths at a 512 tile: the kernels eager, under bf16 autocast and replayed
    from a CUDA graph, and the compiled operator (Inductor's form), all against the unfused eager
    operator (TF32 off: it would dominate the error)."""
    torch._dynamo.reset()  # one compiled variant per parameter set: stay under Dynamo's recompile limit
    torch.manual_seed(dim)
    op = DGWindowOperator(dim, variant, 8, flux, 0.25, True, boundary).cuda().eval()
    x = torch.randn(2, dim, size, size, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        fusible.ENABLED = False
        try:
            ref = op(x)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                ref16 = op(x)
        finally:
            fusible.ENABLED = True
        eager = op(x)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            fused16 = op(x)
        out = torch.compile(op, dynamic=False, fullgraph=True)(x)
        replayed = _captured_and_replayed(op, x)
    for name, result in (("eager", eager), ("compiled", out), ("graph", replayed)):
        torch.testing.assert_close(result, ref, rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
    assert fused16.dtype == ref16.dtype
    torch.testing.assert_close(fused16.float(), ref16.float(), rtol=3e-2, atol=3e-2)
