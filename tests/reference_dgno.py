"""A second, literal implementation of the official DGNO forward, for fidelity tests only.

Written from the architecture note (sections 3-7), deliberately in a different style from
``napari_dgno.model``: functional, reading weights straight from a state dict, channels-last token
tensors as in the official code, Python loops where the official description has them (interface
fluxes, index_reverse), the sequential scan, and hand-written norms. Deterministic routing means
"Gumbel noise = 0": the one-hot of the argmax of the LogSoftmax output, multiplied with the prompt
table like the official ``policy @ full_embedding``. Slow; use small images.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from napari_dgno.model.scan_reference import selective_scan_reference


def conv(sd, key, x, padding=0, groups=1, bias=True):
    b = sd.get(f"{key}.bias") if bias else None
    return F.conv2d(x, sd[f"{key}.weight"], b, padding=padding, groups=groups)


def restormer_norm(sd, key, x):
    h, w = x.shape[-2:]
    t = x.flatten(2).transpose(1, 2)  # b (h w) c
    mu = t.mean(-1, keepdim=True)
    var = ((t - mu) ** 2).mean(-1, keepdim=True)
    t = (t - mu) / torch.sqrt(var + 1e-5) * sd[f"{key}.body.weight"] + sd[f"{key}.body.bias"]
    return t.transpose(1, 2).reshape(x.shape[0], -1, h, w)


def gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def gdfn(sd, key, x):
    x = conv(sd, f"{key}.project_in", x, bias=False)
    x = conv(sd, f"{key}.dwconv", x, padding=1, groups=x.shape[1], bias=False)
    c = x.shape[1] // 2
    return conv(sd, f"{key}.project_out", gelu(x[:, :c]) * x[:, c:], bias=False)


def linear(sd, key, x):
    y = x @ sd[f"{key}.weight"].T
    b = sd.get(f"{key}.bias")
    return y if b is None else y + b


def layer_norm_last(x, w, b):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-5) * w + b


def index_reverse(index):
    out = torch.zeros_like(index)
    ar = torch.arange(index.shape[-1])
    for i in range(index.shape[0]):
        out[i, index[i]] = ar
    return out


def assm(sd, key, x, emb_a):
    b, c, h, w = x.shape
    t = x.flatten(2).transpose(1, 2)  # (b, n, c)
    n_tok = t.shape[1]
    full = sd[f"{key}.embeddingB.weight"] @ emb_a
    logits = torch.log_softmax(linear(sd, f"{key}.route.2", gelu(linear(sd, f"{key}.route.0", t))), dim=-1)
    policy = F.one_hot(logits.argmax(-1), logits.shape[-1]).to(x.dtype)
    prompt = policy @ full  # (b, n, d_state)
    cls = policy.argmax(-1)
    order = torch.sort(cls, dim=-1, stable=True).indices
    reverse = index_reverse(order)
    z = conv(sd, f"{key}.in_proj.0", x)
    z = z * torch.sigmoid(conv(sd, f"{key}.CPE.0", z, padding=1, groups=z.shape[1]))
    z = z.flatten(2).transpose(1, 2)  # (b, n, D)
    z = torch.gather(z, 1, order[..., None].expand_as(z))
    # Selective_Scan.forward_core
    ss = f"{key}.selectiveScan"
    dims = z.shape[-1]
    xs = z.transpose(1, 2)  # (b, D, L)
    n_state = sd[f"{ss}.A_logs"].shape[1]
    rank = sd[f"{ss}.dt_projs_weight"].shape[2]
    xdbl = torch.einsum("bdl,cd->bcl", xs, sd[f"{ss}.x_proj_weight"][0])
    dts, bs, cs = xdbl[:, :rank], xdbl[:, rank:rank + n_state], xdbl[:, rank + n_state:]
    dts = torch.einsum("brl,dr->bdl", dts, sd[f"{ss}.dt_projs_weight"][0])
    cs = cs + prompt.transpose(1, 2)
    y = selective_scan_reference(
        xs, dts, -torch.exp(sd[f"{ss}.A_logs"]), bs[:, None], cs[:, None], sd[f"{ss}.Ds"],
        sd[f"{ss}.dt_projs_bias"].view(-1), True,
    ).transpose(1, 2)
    assert y.shape[-1] == dims
    y = layer_norm_last(y, sd[f"{key}.out_norm.weight"], sd[f"{key}.out_norm.bias"])
    y = linear(sd, f"{key}.out_proj", y)
    y = torch.gather(y, 1, reverse[..., None].expand_as(y))
    assert y.shape[1] == n_tok
    return y.transpose(1, 2).reshape(b, c, h, w)


def encoder_block(sd, key, x):
    x = x + assm(sd, f"{key}.attn", restormer_norm(sd, f"{key}.norm1", x), sd[f"{key}.embeddingA.weight"])
    return x + gdfn(sd, f"{key}.ffn", restormer_norm(sd, f"{key}.norm2", x))


def basic_conv(sd, key, x, act):
    y = conv(sd, f"{key}.main.0", x, padding=sd[f"{key}.main.0.weight"].shape[-1] // 2)
    return gelu(y) if act else y


def scm(sd, key, x):
    x = basic_conv(sd, f"{key}.main.0", x, True)
    x = basic_conv(sd, f"{key}.main.1", x, True)
    x = basic_conv(sd, f"{key}.main.2", x, True)
    x = basic_conv(sd, f"{key}.main.3", x, False)
    mu = x.mean((2, 3), keepdim=True)
    var = ((x - mu) ** 2).mean((2, 3), keepdim=True)
    x = (x - mu) / torch.sqrt(var + 1e-5)
    return x * sd[f"{key}.main.4.weight"][:, None, None] + sd[f"{key}.main.4.bias"][:, None, None]


def galerkin_ln(x, w, b):
    mu = x.mean(-1, keepdim=True)
    std = torch.sqrt(((x - mu) ** 2).sum(-1, keepdim=True) / (x.shape[-1] - 1))
    return w * (x - mu) / (std + 1e-5) + b


def flux_fn(mode, tau, kl, kr):
    if mode == "central":
        return 0.5 * (kl + kr)
    if mode == "jump":
        return -tau * (kr - kl)
    return 0.5 * (kl + kr) - tau * (kr - kl)


def dg_operator(sd, key, x, variant, mode, boundary, window=8, heads=16):
    b, c, h, w = x.shape
    p, d = window, c // heads
    gh, gw = h // p, w // p
    tau = sd.get(f"{key}.tau", torch.tensor(0.0, dtype=x.dtype))
    qkv = conv(sd, f"{key}.qkv_proj", x).permute(0, 2, 3, 1)  # (b, h, w, 3c)

    def partition(t):  # (b, h, w, c) -> (nW, heads, p*p, d)
        t = t.reshape(b, gh, p, gw, p, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, p * p, c)
        return t.reshape(-1, p * p, heads, d).permute(0, 2, 1, 3)

    q, k, v = (partition(qkv[..., i * c:(i + 1) * c]) for i in range(3))
    k = galerkin_ln(k, sd[f"{key}.kln.weight"], sd[f"{key}.kln.bias"])
    v = galerkin_ln(v, sd[f"{key}.vln.weight"], sd[f"{key}.vln.bias"])
    vol = (k.transpose(-2, -1) @ v / (p * p)).reshape(b, gh, gw, heads, d, d)
    if variant == "cell":
        west = east = north = south = vol
    else:
        grid = torch.arange(p * p).reshape(p, p)

        def face(idx):
            return (k[:, :, idx].transpose(-2, -1) @ v[:, :, idx] / p).reshape(b, gh, gw, heads, d, d)

        west, east, north, south = face(grid[:, 0]), face(grid[:, -1]), face(grid[0]), face(grid[-1])
    flux = torch.zeros_like(vol)
    for j in range(gw - 1):  # interfaces (i, j) | (i, j + 1)
        f = flux_fn(mode, tau, east[:, :, j], west[:, :, j + 1])
        flux[:, :, j] = flux[:, :, j] + f
        flux[:, :, j + 1] = flux[:, :, j + 1] - f
    for i in range(gh - 1):  # interfaces (i, j) | (i + 1, j)
        f = flux_fn(mode, tau, south[:, i], north[:, i + 1])
        flux[:, i] = flux[:, i] + f
        flux[:, i + 1] = flux[:, i + 1] - f
    if boundary == "dirichlet":
        # The official code passes the interface tensors: the left column gets its cells' east faces, etc.
        flux[:, :, 0] = flux[:, :, 0] + flux_fn(mode, tau, east[:, :, 0], 0 * east[:, :, 0])
        flux[:, :, -1] = flux[:, :, -1] + flux_fn(mode, tau, west[:, :, -1], 0 * west[:, :, -1])
        flux[:, 0] = flux[:, 0] + flux_fn(mode, tau, south[:, 0], 0 * south[:, 0])
        flux[:, -1] = flux[:, -1] + flux_fn(mode, tau, north[:, -1], 0 * north[:, -1])
    op = (vol + flux).reshape(-1, heads, d, d)
    out = (q @ op).permute(0, 2, 1, 3).reshape(b, gh, gw, p, p, c)
    out = out.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, c).permute(0, 3, 1, 2)
    t = out + x
    return conv(sd, f"{key}.out_proj2", gelu(conv(sd, f"{key}.out_proj1", t))) + x


def reference_forward(sd, cfg, img):
    """Official DGNO forward (no padding: H, W multiples of 32) with deterministic routing."""
    variant, mode, boundary = cfg["variant"], cfg.get("flux_mode", "central"), cfg.get("boundary_type", "neumann")
    window = cfg.get("win_dg", 8) if variant == "cell" else 8
    counts = cfg["num_blocks"]

    def level(name, x, count):
        for i in range(count):
            x = encoder_block(sd, f"{name}.{i}", x)
        return x

    def down(key, x):
        return F.pixel_unshuffle(conv(sd, f"{key}.body.0", x, padding=1, bias=False), 2)

    def up(key, x):
        return F.pixel_shuffle(conv(sd, f"{key}.body.0", x, padding=1, bias=False), 2)

    def dgop(key, x):
        return dg_operator(sd, key, x, variant, mode, boundary, window)

    x2 = img[..., ::2, ::2]
    x4 = x2[..., ::2, ::2]
    z2, z4 = scm(sd, "SCM2", x2), scm(sd, "SCM1", x4)
    e1 = level("encoder_level1", conv(sd, "patch_embed.proj", img, padding=1, bias=False), counts[0])
    e2 = level("encoder_level2", basic_conv(sd, "FAM2.merge", torch.cat([down("down1_2", e1), z2], 1), False), counts[1])
    e3 = level("encoder_level3", basic_conv(sd, "FAM1.merge", torch.cat([down("down2_3", e2), z4], 1), False), counts[2])
    lat = level("latent", down("down3_4", e3), counts[3])
    d3 = conv(sd, "reduce_chan_level3", torch.cat([up("up4_3", lat), e3], 1), bias=False)
    d3 = dgop("conv111", dgop("conv000", d3))
    o0 = basic_conv(sd, "ConvsOut.0", d3, False) + x4
    d2 = conv(sd, "reduce_chan_level2", torch.cat([up("up3_2", d3), e2], 1), bias=False)
    d2 = dgop("conv11", dgop("conv00", d2))
    o1 = basic_conv(sd, "ConvsOut.1", d2, False) + x2
    d1 = conv(sd, "reduce_chan_level1", torch.cat([up("up2_1", d2), e1], 1), bias=False)
    d1 = dgop("conv1", dgop("conv0", d1))
    o2 = conv(sd, "output", d1, padding=1, bias=False) + img
    return [o0, o1, o2]
