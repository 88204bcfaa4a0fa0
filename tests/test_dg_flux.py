"""DG interface fluxes and the Face boundary rule on small hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from napari_dgno.model.dg import accumulate_flux, interface_flux


def test_interface_flux_formulas():
    kl, kr, tau = torch.tensor(2.0), torch.tensor(5.0), 0.25
    assert float(interface_flux(kl, kr, "central", tau)) == 3.5
    assert float(interface_flux(kl, kr, "jump", tau)) == -0.75  # -tau (KR - KL)
    assert float(interface_flux(kl, kr, "avg_jump", tau)) == 3.5 - 0.75
    with pytest.raises(ValueError, match="flux_mode"):
        interface_flux(kl, kr, "upwind", tau)


def _grid(values):
    """(1, Gh, Gw, 1, 1, 1) operator grid from a nested list of scalars."""
    return torch.tensor(values, dtype=torch.float64)[None, :, :, None, None, None]


def test_cell_jump_neumann_is_a_discrete_laplacian():
    """Released Cell models: flux(i,j) = -tau * (sum of neighbour differences), no boundary term."""
    k = _grid([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]])
    tau = 0.5
    flux = accumulate_flux(k, k, k, k, "jump", "neumann", tau)[0, :, :, 0, 0, 0]
    expected = torch.zeros(2, 3, dtype=torch.float64)
    kk = k[0, :, :, 0, 0, 0]
    for i in range(2):
        for j in range(3):
            for di, dj in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                if 0 <= i + di < 2 and 0 <= j + dj < 3:
                    expected[i, j] -= tau * (kk[i + di, j + dj] - kk[i, j])
    torch.testing.assert_close(flux, expected)


def test_cell_central_dirichlet_by_hand():
    k = _grid([[2.0, 6.0]])  # one row, two cells
    flux = accumulate_flux(k, k, k, k, "central", "dirichlet", 0.0)[0, 0, :, 0, 0, 0]
    # interface: F = (2 + 6) / 2 = 4 -> cell0 +4, cell1 -4
    # boundaries (central, ghost 0): left +1 (cell0), right +3 (cell1), top & bottom each +K (one row)
    assert flux.tolist() == [4 + 1 + 1 + 1, -4 + 3 + 3 + 3]


def test_face_boundary_uses_the_opposite_face():
    """Official quirk: left column gets F(east face, 0), right column F(west face, 0), etc."""
    west = _grid([[1.0, 10.0]])
    east = _grid([[100.0, 1000.0]])
    north = _grid([[0.0, 0.0]])
    south = _grid([[0.0, 0.0]])
    tau = 0.25
    flux = accumulate_flux(west, east, north, south, "avg_jump", "dirichlet", tau)[0, 0, :, 0, 0, 0]

    def f(kl, kr):
        return 0.5 * (kl + kr) - tau * (kr - kl)

    interface = f(100.0, 10.0)  # cell0's east face | cell1's west face
    cell0 = interface + f(100.0, 0.0) + f(0.0, 0.0) + f(0.0, 0.0)  # left boundary sees cell0's EAST face
    cell1 = -interface + f(10.0, 0.0) + f(0.0, 0.0) + f(0.0, 0.0)  # right boundary sees cell1's WEST face
    assert flux.tolist() == pytest.approx([cell0, cell1])


def test_neumann_face_has_no_boundary_term():
    west, east = _grid([[1.0, 10.0]]), _grid([[100.0, 1000.0]])
    zero = torch.zeros_like(west)
    flux = accumulate_flux(west, east, zero, zero, "jump", "neumann", 0.25)[0, 0, :, 0, 0, 0]
    interface = -0.25 * (10.0 - 100.0)
    assert flux.tolist() == pytest.approx([interface, -interface])


def test_galerkin_norm_gradient_is_finite_when_a_head_is_flat():
    """Equal values in a head (frequent under bf16) must not give NaN gradients; forward unchanged."""
    from napari_dgno.model.dg import GalerkinLayerNorm

    norm = GalerkinLayerNorm(16, 2)
    x = torch.randn(4, 16, 64, 2, dtype=torch.float64)
    x[0, 0, 0, 1] = x[0, 0, 0, 0]
    x.requires_grad_(True)
    out = norm(x)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    mean = x.detach().mean(-1, keepdim=True)
    expected = (x.detach() - mean) / (x.detach().std(-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(out.detach(), expected, rtol=1e-12, atol=1e-12)
