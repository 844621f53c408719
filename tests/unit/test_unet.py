"""The shared UNet: shapes, encode/decode, embeddings, the zero-initialised control branch."""

from __future__ import annotations

import pytest
import torch

from sciflow.nn import ControlBranch, UNet

#: Parameters of ``UNet(3, 3)`` (base 32, mults (1, 2, 2), one block per level, time embedding).
DEFAULT_PARAMETERS = 835_875


def _tiny(**kwargs) -> UNet:
    torch.manual_seed(0)
    args = dict(in_channels=3, out_channels=3, base_channels=8, channel_mults=(1, 2))
    return UNet(**(args | kwargs))


@pytest.mark.parametrize(
    ("kwargs", "size"),
    [
        (dict(in_channels=1, out_channels=5), 16),
        (dict(in_channels=7, out_channels=3, channel_mults=(1, 2, 2)), 16),
        (dict(in_channels=3, out_channels=3, base_channels=6, attention_levels=(1,)), 8),
        (dict(in_channels=3, out_channels=1, num_res_blocks=2, attention_levels=(0, 1)), 8),
        (dict(in_channels=3, out_channels=3, shuffle_factor=2, time_embedding=False), 16),
        (dict(in_channels=5, out_channels=2, base_channels=9, cond_dim=4), 8),
    ],
)
def test_output_shapes(kwargs, size):
    unet = _tiny(**kwargs)
    x = torch.randn(2, unet.in_channels, size, size + unet.size_multiple)
    t = torch.rand(2) if unet.time_embed is not None else None
    cond = torch.randn(2, unet.cond_dim) if unet.cond_dim else None
    assert unet(x, t, cond).shape == (2, unet.out_channels, size, size + unet.size_multiple)


def test_encode_shapes_and_compose_to_forward():
    unet = _tiny(channel_mults=(1, 2, 3), shuffle_factor=2, cond_dim=3).eval()
    x, t, cond = torch.randn(2, 3, 32, 32), torch.rand(2), torch.randn(2, 3)
    emb = unet.embed(t, cond, 2)
    features = unet.encode(x, emb)
    shapes = [tuple(f.shape) for f in features]
    assert shapes == [(2, 8, 16, 16), (2, 16, 8, 8), (2, 24, 4, 4), (2, 24, 4, 4)]
    torch.testing.assert_close(unet.decode(features, emb), unet(x, t, cond), rtol=0, atol=0)


def test_zero_initialised_control_leaves_output_unchanged():
    unet = _tiny(channel_mults=(1, 2, 2), attention_levels=(2,), cond_dim=2).eval()
    branch = ControlBranch(unet, control_channels=4)
    x, t, cond = torch.randn(3, 3, 16, 16), torch.rand(3), torch.randn(3, 2)
    residuals = branch(x, torch.randn(3, 4, 16, 16), unet.embed(t, cond, 3))
    assert [r.shape for r in residuals] == [f.shape for f in unet.encode(x)]
    assert all(torch.count_nonzero(r) == 0 for r in residuals)
    assert torch.equal(unet(x, t, cond, control=residuals), unet(x, t, cond))


def test_control_changes_output_once_trained_and_gets_gradients():
    unet = _tiny()
    branch = ControlBranch(unet, control_channels=3)
    x, t, hint = torch.randn(2, 3, 8, 8), torch.rand(2), torch.randn(2, 3, 8, 8)
    unet(x, t, control=branch(x, hint, unet.embed(t, None, 2))).square().mean().backward()
    # zero convs receive gradients at init (the features they read are nonzero)
    assert all(conv.weight.grad.abs().sum() > 0 for conv in branch.zero_convs)
    with torch.no_grad():
        for conv in branch.zero_convs:
            conv.weight.normal_(std=0.1)
    assert not torch.allclose(unet(x, t, control=branch(x, hint)), unet(x, t))


def test_time_and_condition_change_the_output():
    unet = _tiny(cond_dim=3).eval()
    x, cond = torch.randn(2, 3, 8, 8), torch.randn(2, 3)
    base = unet(x, 0.2, cond)
    assert not torch.allclose(base, unet(x, 0.8, cond))
    assert not torch.allclose(base, unet(x, 0.2, cond + 1.0))
    torch.testing.assert_close(base, unet(x, torch.full((2,), 0.2), cond))


def test_gradients_reach_every_parameter():
    unet = _tiny(cond_dim=2, attention_levels=(1,))
    unet(torch.randn(2, 3, 8, 8), torch.rand(2), torch.randn(2, 2)).square().mean().backward()
    missing = [name for name, p in unet.named_parameters() if p.grad is None or not p.grad.any()]
    assert missing == []


def test_default_parameter_count():
    assert sum(p.numel() for p in UNet(3, 3).parameters()) == DEFAULT_PARAMETERS


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda u: u(torch.randn(1, 3, 8, 8)), "t: required"),
        (lambda u: u(torch.randn(1, 2, 8, 8), 0.5), r"x: expected \(B, 3, H, W\)"),
        (lambda u: u(torch.randn(1, 3, 7, 8), 0.5), "multiples of 2"),
        (lambda u: u(torch.randn(2, 3, 8, 8), torch.rand(3)), r"t: expected shape \(2,\)"),
        (lambda u: u(torch.randn(1, 3, 8, 8), 0.5, torch.randn(1, 2)), "cond: this UNet"),
        (lambda u: u(torch.randn(1, 3, 8, 8), 0.5, control=[]), "control: expected shapes"),
        (lambda u: u.decode([torch.randn(1, 8, 8, 8)]), "features: expected 3 maps"),
    ],
)
def test_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(_tiny())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(in_channels=0), "in_channels"),
        (dict(channel_mults=()), "channel_mults"),
        (dict(attention_levels=(2,)), "attention_levels"),
        (dict(cond_dim=0), "cond_dim"),
        (dict(dropout=1.0), "dropout"),
    ],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _tiny(**kwargs)
