"""Faster inference: ``torch.compile`` of DGNO (whole network or its blocks) and CUDA-graph replay.

At inference DGNO is hundreds of small memory-bound kernels (layer norms on permuted maps, dtype
casts, small batched matmuls, elementwise ops) plus Python launch overhead. Two remedies, usable
alone or together through :func:`accelerate`:

* ``compile``: ``torch.compile`` with Inductor, which fuses the norms, casts and elementwise ops;
  the selective scan and the fused depthwise-gate/gather kernels stay opaque custom ops
  (:mod:`.scan_op`, :mod:`.fusible`). What is compiled depends on the device
  (:func:`default_compile_scope`): on CUDA the whole forward as one graph (:func:`compile_network`:
  Inductor also fuses across block boundaries and lays out the convolutions between the blocks;
  40.2 -> 37.1 ms in bf16 at 4 x 512 x 512 on an H200 against compiled blocks, ``bench/profile_e2e.py``,
  seventh pass), on CPU each :class:`~.assm.EncoderBlock` and :class:`~.dg.DGWindowOperator`
  (:func:`compile_blocks`: same-shaped blocks share one compiled graph, 7-12 s per block shape on a
  2-core CPU, where compiling the whole network did not finish in 150 s). Either way each input
  shape (x dtype x autocast state) compiles once on first use. Pays off for long jobs on many
  same-sized tiles.
* ``graphs`` (:class:`CudaGraphForward`): capture the whole forward in a CUDA graph per input
  shape and replay it. Removes the Python and launch overhead (large for small batches and tiles),
  costs a warm-up and a capture per shape (three forward passes) and keeps one set of
  activations allocated. Needs CUDA, eval mode, argmax routing and a capturable scan backend
  (triton or mamba).
* ``compile+graphs``: both; the network is compiled during the warm-up, then the whole forward is captured.

All modes are for inference only (under ``torch.inference_mode()`` or ``torch.no_grad()``).
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map_only

from .assm import ASSM, EncoderBlock
from .dg import DGWindowOperator
from .scan import resolve_backend

MODES = ("none", "graphs", "compile", "compile+graphs")
#: What ``compile`` compiles: the repeated blocks, or the whole network as one graph.
COMPILE_SCOPES = ("blocks", "network")
#: Blocks that :func:`compile_blocks` compiles: the repeated regions of the network.
COMPILED_BLOCKS = (EncoderBlock, DGWindowOperator)
#: Compiled variants kept per compiled code (a block class, or the network's forward). The full
#: network has 4 encoder widths and 3 DG widths, times tile sizes, dtypes and autocast states;
#: Dynamo's default (8) would fall back to eager.
RECOMPILE_LIMIT = 64
#: Scan backends whose kernels can be captured (no host synchronisation inside).
GRAPH_SAFE_SCANS = ("triton", "mamba")


def default_compile_scope(device: torch.device | str) -> str:
    """``network`` on CUDA (faster: fusion across blocks), ``blocks`` elsewhere (compiles in reasonable time)."""
    return "network" if torch.device(device).type == "cuda" else "blocks"


def _raise_recompile_limit() -> None:
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)


def _require_dgno_blocks(model: nn.Module, caller: str) -> None:
    if not any(isinstance(m, COMPILED_BLOCKS) for m in model.modules()):
        raise ValueError(
            f"{caller} found no EncoderBlock or DGWindowOperator in {type(model).__name__}; "
            "pass a napari_dgno DGNO network (or use torch.compile on your own model)"
        )


def compile_network(model: nn.Module, **kwargs: Any) -> nn.Module:
    """``torch.compile`` the whole forward of ``model`` in place (one graph per input shape); returns ``model``.

    ``kwargs`` and the recompile limit as for :func:`compile_blocks`. Parameter names and the state
    dict are unchanged.
    """
    _require_dgno_blocks(model, "compile_network")
    kwargs.setdefault("dynamic", False)
    _raise_recompile_limit()
    model.compile(**kwargs)
    return model


def compiled_network(model: nn.Module) -> bool:
    """True when :func:`compile_network` has compiled ``model`` (for checks and tests)."""
    return getattr(model, "_compiled_call_impl", None) is not None


def compile_blocks(model: nn.Module, **kwargs: Any) -> nn.Module:
    """``torch.compile`` every EncoderBlock and DGWindowOperator of ``model`` in place; returns ``model``.

    ``kwargs`` go to :meth:`torch.nn.Module.compile` (``backend``, ``mode``, ``fullgraph``...);
    ``dynamic`` defaults to False so that each block shape gets its own static graph instead of one
    slower dynamic-shape graph. Parameter names and the state dict are unchanged. Also raises
    Dynamo's per-code recompile limit to :data:`RECOMPILE_LIMIT` (a process-wide setting).
    """
    _require_dgno_blocks(model, "compile_blocks")
    kwargs.setdefault("dynamic", False)
    _raise_recompile_limit()
    for module in model.modules():
        if isinstance(module, COMPILED_BLOCKS):
            module.compile(**kwargs)
    return model


def compiled_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks of ``model`` that :func:`compile_blocks` has compiled (for checks and tests)."""
    return [m for m in model.modules() if isinstance(m, COMPILED_BLOCKS) and m._compiled_call_impl is not None]


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    static_input: torch.Tensor
    outputs: Any  # the model's output structure, tensors living in the graph's memory pool


def _autocast_state(device: torch.device) -> tuple[bool, torch.dtype | None]:
    enabled = torch.is_autocast_enabled(device.type)
    return enabled, torch.get_autocast_dtype(device.type) if enabled else None


@contextlib.contextmanager
def _capture_context(device: torch.device, autocast: tuple[bool, torch.dtype | None]) -> Iterator[None]:
    """Inference mode, and the caller's autocast with its weight-cast cache off: a cached cast made
    during the warm-up would be baked into the graph and freed when the caller's autocast exits."""
    with torch.inference_mode():
        if not autocast[0]:
            yield
            return
        with torch.autocast(device.type, dtype=autocast[1], cache_enabled=False):
            yield


class CudaGraphForward:
    """Call ``model(x)`` through CUDA graphs: one captured graph per input shape/dtype/autocast state.

    The first call with a new key warms the model up on a side stream (compiled code compiles
    here), captures ``model(static_input)`` and keeps the graph; every call copies ``x`` into the
    static input, replays, and returns clones of the outputs (same structure as ``model(x)``). At
    most ``max_graphs`` graphs are kept (least recently used dropped first); they share one memory
    pool. The captured graph reads the parameters in place: in-place weight updates
    (``load_state_dict``) are seen, moving or replacing parameters needs :meth:`release`. The scan
    backend and routing are fixed at capture. Other attributes are read from the model.
    """

    def __init__(self, model: nn.Module, max_graphs: int = 4, warmup: int = 2):
        if max_graphs < 1 or warmup < 1:
            raise ValueError(f"max_graphs and warmup must be >= 1, got {max_graphs} and {warmup}")
        self.model, self.max_graphs, self.warmup = model, max_graphs, warmup
        self._assms = [m for m in model.modules() if isinstance(m, ASSM)]
        self._graphs: OrderedDict[tuple, _Captured] = OrderedDict()
        self._pool: Any = None
        self._lock = threading.Lock()
        self._check_model()

    def __getattr__(self, name: str) -> Any:  # only called for names not found on the wrapper
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)

    @property
    def num_graphs(self) -> int:
        return len(self._graphs)

    def _check_model(self) -> None:
        if self.model.training:
            raise ValueError("CUDA graphs need the model in eval mode; call model.eval() first")
        if any(m.training or m.routing != "argmax" for m in self._assms):
            raise ValueError(
                "CUDA graphs need deterministic routing: gumbel routing samples new random numbers "
                "on every call, which a replayed graph would not; set model.routing = 'argmax' "
                "(or use accelerate mode 'none' or 'compile')"
            )

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.device.type != "cuda":
            where = x.device if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"CUDA graphs need a CUDA input tensor, got {where}; move it with x.to('cuda')")
        scan = resolve_backend(None, x.device, needs_grad=False, double=x.dtype == torch.float64)
        if scan not in GRAPH_SAFE_SCANS:
            raise ValueError(
                f"CUDA graphs cannot capture the {scan!r} selective-scan backend (it reads values on the "
                f"host); install triton or mamba-ssm, or set NAPARI_DGNO_SCAN=triton, or use accelerate "
                f"mode 'compile' or 'none' (float64 models always scan with 'torch')"
            )

    def __call__(self, x: torch.Tensor) -> Any:
        self._check_model()
        key = (tuple(x.shape), x.dtype, x.device, _autocast_state(x.device)) if isinstance(x, torch.Tensor) else None
        with self._lock:
            entry = self._graphs.get(key)
            if entry is None:
                self._check_input(x)
                entry = self._capture(x, key)
            else:
                self._graphs.move_to_end(key)
            with torch.inference_mode():
                entry.static_input.copy_(x)
                entry.graph.replay()
            # Outside inference mode when the caller is: plain tensors, usable like model(x)'s.
            return tree_map_only(torch.Tensor, torch.clone, entry.outputs)

    def _capture(self, x: torch.Tensor, key: tuple) -> _Captured:
        device = x.device
        while len(self._graphs) >= self.max_graphs:
            self._graphs.popitem(last=False)
        with torch.cuda.device(device):
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            with torch.inference_mode():
                static = torch.empty(x.shape, dtype=x.dtype, device=device)
                static.copy_(x)
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side), _capture_context(device, key[3]):
                for _ in range(self.warmup):
                    self.model(static)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: CUDA calls of other threads (e.g. the engine's next upload) may go on.
            capture = torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local")
            with _capture_context(device, key[3]), capture:
                outputs = self.model(static)
        entry = _Captured(graph, static, outputs)
        self._graphs[key] = entry
        return entry

    def release(self) -> None:
        """Drop every captured graph and its memory (call after moving or replacing parameters)."""
        with self._lock:
            if self._graphs and torch.cuda.is_available():
                torch.cuda.synchronize()
            self._graphs.clear()
            self._pool = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def accelerate(
    model: nn.Module,
    device: torch.device | str,
    mode: str = "none",
    *,
    compile_options: dict[str, Any] | None = None,
    compile_scope: str | None = None,
    max_graphs: int = 4,
) -> Any:
    """``model`` on ``device`` made faster for inference; call the result like the model.

    ``mode``: ``none`` (the model itself), ``compile`` (compiled in place, the model itself),
    ``graphs`` or ``compile+graphs`` (a :class:`CudaGraphForward`; CUDA only, eval mode, argmax
    routing). See the module docstring for when each pays off. ``compile_scope``: ``network``
    (:func:`compile_network`) or ``blocks`` (:func:`compile_blocks`), by default
    :func:`default_compile_scope` of ``device``; ``compile_options`` go to that function. Call the
    result under ``torch.inference_mode()`` (as the engine does).
    """
    if mode not in MODES:
        raise ValueError(f"unknown acceleration mode {mode!r}; choose one of {', '.join(MODES)}")
    if compile_scope is not None and compile_scope not in COMPILE_SCOPES:
        raise ValueError(f"unknown compile_scope {compile_scope!r}; choose one of {', '.join(COMPILE_SCOPES)}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"accelerate needs a torch.nn.Module (a DGNO network), got {type(model).__name__}")
    device = torch.device(device)
    if "graphs" in mode and device.type != "cuda":
        raise ValueError(
            f"mode {mode!r} needs a CUDA device (CUDA graphs), got {device.type}; use 'compile' or 'none'"
        )
    if "graphs" in mode and model.training:
        raise ValueError(f"mode {mode!r} needs the model in eval mode; call model.eval() first")
    model.to(device)
    if mode == "none":
        return model
    if "compile" in mode:
        scope = compile_scope or default_compile_scope(device)
        compiler = compile_network if scope == "network" else compile_blocks
        compiler(model, **(compile_options or {}))
    if "graphs" in mode:
        return CudaGraphForward(model, max_graphs=max_graphs)
    return model
