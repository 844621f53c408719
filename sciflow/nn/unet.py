"""A compact convolutional UNet with embedding modulation, multiscale features and a control hook.

Layout for ``L = len(channel_mults)`` levels, ``c_i = base_channels * channel_mults[i]``:

* optional ``pixel_unshuffle`` by ``shuffle_factor`` s (a (B, C, H, W) image is processed as
  (B, C·s², H/s, W/s) and the output shuffled back), so a 64 px image can run at 32 px;
* an :class:`Encoder`: a 3x3 stem, then per level ``num_res_blocks`` residual blocks (plus
  self-attention at the levels in ``attention_levels``) and a stride-2 convolution between
  levels, then a middle block at the coarsest scale;
* a :class:`Decoder`: per level, coarsest first, the running features are concatenated with that
  level's skip, passed through residual blocks and upsampled, then a GroupNorm-SiLU-conv head.

:meth:`UNet.encode` returns ``L + 1`` feature maps, ``H' = H / s``::

    features[i] = (B, c_i, H' / 2**i, W' / 2**i)        i = 0 … L-1 (the skips)
    features[L] = (B, c_{L-1}, H' / 2**(L-1), W' / 2**(L-1))   (the middle block's output)

and :meth:`UNet.decode` maps such a list back to (B, out_channels, H, W). ``control`` residuals
(ControlNet style) have exactly these shapes and are added to the features before decoding;
:class:`ControlBranch` produces them from a control image and is an exact no-op at init.

Every residual block is modulated by one embedding vector per sample (FiLM: scale and shift after
its second GroupNorm): Fourier features of t through an MLP, plus the condition vector through its
own MLP, both of width ``4 * base_channels``. Blocks receive no modulation when the embedding is
None (a UNet built with neither time nor condition, or features encoded without one).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sciflow.nn.embeddings import FourierTimeEmbedding


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm with ``gcd(channels, groups)`` groups, so any channel count works."""
    return nn.GroupNorm(math.gcd(channels, groups), channels)


def _check_image(x: torch.Tensor, channels: int, multiple: int, name: str) -> None:
    """Raise unless ``x`` is (B, channels, H, W) with H and W multiples of ``multiple``."""
    if x.dim() != 4 or x.shape[1] != channels or x.shape[2] % multiple or x.shape[3] % multiple:
        raise ValueError(
            f"{name}: expected (B, {channels}, H, W) with H and W multiples of {multiple}, "
            f"got {tuple(x.shape)}"
        )


def _unshuffle(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, H, W) → (B, C·s², H/s, W/s) (identity for s = 1)."""
    return F.pixel_unshuffle(x, factor) if factor > 1 else x


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with a skip; FiLM from ``emb`` after the second norm.

    x: (B, in_ch, H, W), emb: (B, emb_dim) or None → (B, out_ch, H, W).
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int | None, dropout: float, groups: int):
        super().__init__()
        self.norm1 = _norm(in_ch, groups)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_ch) if emb_dim else None
        self.norm2 = _norm(out_ch, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.norm2(h)
        if self.film is not None and emb is not None:
            scale, shift = self.film(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
            h = h * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H·W positions with a residual: (B, C, H, W) → same."""

    def __init__(self, channels: int, groups: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_dim) if channels % head_dim == 0 else 1
        self.norm = _norm(channels, groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, H·W, head_dim)
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class _Level(nn.Module):
    """``num_blocks`` residual blocks, each followed by attention when ``attention``."""

    def __init__(self, in_ch, out_ch, num_blocks, emb_dim, dropout, groups, attention):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(in_ch if i == 0 else out_ch, out_ch, emb_dim, dropout, groups)
            for i in range(num_blocks)
        )
        self.attn = nn.ModuleList(
            SelfAttention(out_ch, groups) if attention else nn.Identity() for _ in range(num_blocks)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None) -> torch.Tensor:
        for block, attn in zip(self.blocks, self.attn, strict=True):
            x = attn(block(x, emb))
        return x


class Encoder(nn.Module):
    """Stem, levels with stride-2 downsampling between them, middle block.

    ``forward(x, emb)``: x (B, in_ch, H, W) with H, W divisible by 2**(L-1) → the L + 1 feature
    maps listed in the module docstring (without the pixel-unshuffle, which :class:`UNet` does).
    """

    def __init__(self, in_ch, channels, num_res_blocks, attention_levels, emb_dim, dropout, groups):
        super().__init__()
        self.stem = nn.Conv2d(in_ch, channels[0], 3, padding=1)
        self.levels = nn.ModuleList()
        self.downs = nn.ModuleList()
        prev = channels[0]
        for i, ch in enumerate(channels):
            attn = i in attention_levels
            self.levels.append(_Level(prev, ch, num_res_blocks, emb_dim, dropout, groups, attn))
            if i < len(channels) - 1:
                self.downs.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
            prev = ch
        last = len(channels) - 1 in attention_levels
        self.middle = _Level(prev, prev, 2, emb_dim, dropout, groups, last)

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor | None, hint: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        h = self.stem(x)
        if hint is not None:
            h = h + hint
        features = []
        for i, level in enumerate(self.levels):
            h = level(h, emb)
            features.append(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        features.append(self.middle(h, emb))
        return features


class Decoder(nn.Module):
    """Levels coarsest first (concat skip → residual blocks → upsample), then the output head.

    ``forward(features, emb)``: the L + 1 maps of :class:`Encoder` → (B, out_ch, H, W).
    """

    def __init__(
        self, out_ch, channels, num_res_blocks, attention_levels, emb_dim, dropout, groups
    ):
        super().__init__()
        self.levels = nn.ModuleList()
        self.ups = nn.ModuleList()
        prev = channels[-1]
        for i in reversed(range(len(channels))):
            ch, attn = channels[i], i in attention_levels
            self.levels.append(
                _Level(prev + ch, ch, num_res_blocks, emb_dim, dropout, groups, attn)
            )
            if i > 0:
                self.ups.append(nn.Conv2d(ch, ch, 3, padding=1))
            prev = ch
        self.head = nn.Sequential(
            _norm(prev, groups), nn.SiLU(), nn.Conv2d(prev, out_ch, 3, padding=1)
        )

    def forward(self, features: Sequence[torch.Tensor], emb: torch.Tensor | None) -> torch.Tensor:
        skips, h = list(features[:-1]), features[-1]
        for j, level in enumerate(self.levels):
            h = level(torch.cat([h, skips.pop()], dim=1), emb)
            if j < len(self.ups):
                h = self.ups[j](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.head(h)


class UNet(nn.Module):
    """Convolutional UNet: (B, in_channels, H, W) → (B, out_channels, H, W).

    Args:
        in_channels, out_channels: image channels (any positive count).
        base_channels: width of the first level; level i has ``base_channels * channel_mults[i]``.
        channel_mults: width multipliers, one per level (L levels, L - 1 downsamplings).
        num_res_blocks: residual blocks per level in the encoder and in the decoder.
        attention_levels: level indices (0 = finest) with self-attention after each block;
            attention at level L - 1 also enters the middle block.
        time_embedding: embed t (Fourier features + MLP); ``forward`` then requires ``t``.
        cond_dim: size of a per-sample condition vector, or None for none; ``forward`` then
            requires ``cond`` of shape (B, cond_dim).
        dropout: dropout inside the residual blocks.
        shuffle_factor: s ≥ 1; with s > 1 the image is pixel-unshuffled to (C·s², H/s, W/s)
            before the encoder and shuffled back after the decoder.
        norm_groups: GroupNorm groups (reduced to ``gcd(channels, norm_groups)`` per layer).

    H and W must be divisible by ``shuffle_factor * 2**(L-1)`` (:attr:`size_multiple`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_channels: int = 32,
        channel_mults: Sequence[int] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_levels: Sequence[int] = (),
        time_embedding: bool = True,
        cond_dim: int | None = None,
        dropout: float = 0.0,
        shuffle_factor: int = 1,
        norm_groups: int = 8,
    ):
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("base_channels", base_channels),
            ("num_res_blocks", num_res_blocks),
            ("shuffle_factor", shuffle_factor),
            ("norm_groups", norm_groups),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        mults = tuple(channel_mults)
        if not mults or any(not isinstance(m, int) or m < 1 for m in mults):
            raise ValueError(f"channel_mults: expected positive ints, got {channel_mults!r}")
        attention = tuple(attention_levels)
        if any(not 0 <= a < len(mults) for a in attention):
            raise ValueError(
                f"attention_levels: expected indices in [0, {len(mults) - 1}], got {attention!r}"
            )
        if cond_dim is not None and (not isinstance(cond_dim, int) or cond_dim < 1):
            raise ValueError(f"cond_dim: expected None or a positive int, got {cond_dim!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout: expected a float in [0, 1), got {dropout!r}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.shuffle_factor = shuffle_factor
        self.cond_dim = cond_dim
        self.channels = tuple(base_channels * m for m in mults)
        self.size_multiple = shuffle_factor * 2 ** (len(mults) - 1)
        emb_dim = 4 * base_channels if (time_embedding or cond_dim) else None
        self.emb_dim = emb_dim
        self.time_embed = (
            nn.Sequential(
                FourierTimeEmbedding(base_channels + base_channels % 2),
                nn.Linear(base_channels + base_channels % 2, emb_dim),
                nn.SiLU(),
                nn.Linear(emb_dim, emb_dim),
            )
            if time_embedding
            else None
        )
        self.cond_embed = (
            nn.Sequential(nn.Linear(cond_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
            if cond_dim
            else None
        )
        args = (self.channels, num_res_blocks, attention, emb_dim, dropout, norm_groups)
        self.encoder = Encoder(in_channels * shuffle_factor**2, *args)
        self.decoder = Decoder(out_channels * shuffle_factor**2, *args)

    # -- embedding ------------------------------------------------------------------------
    def embed(
        self, t: torch.Tensor | float | None, cond: torch.Tensor | None, batch_size: int
    ) -> torch.Tensor | None:
        """The modulation vector (B, 4·base_channels), or None when the UNet takes neither.

        t: (B,) or a scalar (broadcast), required iff built with ``time_embedding``.
        cond: (B, cond_dim), required iff built with ``cond_dim``.
        """
        emb = None
        if self.time_embed is None:
            if t is not None:
                raise ValueError("t: this UNet has time_embedding=False; pass t=None")
        else:
            if t is None:
                raise ValueError("t: required (time_embedding=True), got None")
            t = torch.as_tensor(t, dtype=self._dtype(), device=self._device())
            if t.dim() == 0:
                t = t.expand(batch_size)
            if t.shape != (batch_size,):
                raise ValueError(f"t: expected shape ({batch_size},) or (), got {tuple(t.shape)}")
            emb = self.time_embed(t)
        if self.cond_embed is None:
            if cond is not None:
                raise ValueError("cond: this UNet has cond_dim=None; pass cond=None")
        else:
            if cond is None or cond.shape != (batch_size, self.cond_dim):
                got = None if cond is None else tuple(cond.shape)
                raise ValueError(f"cond: expected shape ({batch_size}, {self.cond_dim}), got {got}")
            c = self.cond_embed(cond.to(self._dtype()))
            emb = c if emb is None else emb + c
        return emb

    def _device(self) -> torch.device:
        return self.encoder.stem.weight.device

    def _dtype(self) -> torch.dtype:
        return self.encoder.stem.weight.dtype

    # -- encoder / decoder ----------------------------------------------------------------
    def encode(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> list[torch.Tensor]:
        """x: (B, in_channels, H, W), emb from :meth:`embed` or None → L + 1 feature maps."""
        _check_image(x, self.in_channels, self.size_multiple, "x")
        return self.encoder(_unshuffle(x, self.shuffle_factor), emb)

    def decode(
        self, features: Sequence[torch.Tensor], emb: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The L + 1 maps of :meth:`encode` → (B, out_channels, H, W)."""
        if len(features) != len(self.channels) + 1:
            raise ValueError(
                f"features: expected {len(self.channels) + 1} maps, got {len(features)}"
            )
        out = self.decoder(features, emb)
        s = self.shuffle_factor
        return F.pixel_shuffle(out, s) if s > 1 else out

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float | None = None,
        cond: torch.Tensor | None = None,
        control: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x: (B, in_channels, H, W); t: (B,) or scalar; cond: (B, cond_dim); control: residuals
        shaped like :meth:`encode`'s output, added before decoding → (B, out_channels, H, W)."""
        emb = self.embed(t, cond, x.shape[0])
        features = self.encode(x, emb)
        if control is not None:
            if len(control) != len(features) or any(
                c.shape != f.shape for c, f in zip(control, features, strict=False)
            ):
                raise ValueError(
                    f"control: expected shapes {[tuple(f.shape) for f in features]}, got "
                    f"{[tuple(c.shape) for c in control]}"
                )
            features = [f + c for f, c in zip(features, control, strict=True)]
        return self.decode(features, emb)


class ControlBranch(nn.Module):
    """ControlNet-style branch: a trainable copy of a UNet's encoder that reads a control image.

    The control image passes through a zero-initialised 3x3 conv and is added to the copied
    stem's output; each of the L + 1 encoder outputs passes through a zero-initialised 1x1 conv.
    So at init the residuals are exactly zero and ``unet(x, t, cond, control=branch(...))``
    equals ``unet(x, t, cond)`` bit for bit.

    Args:
        unet: the UNet to control; its encoder is deep-copied (weights included).
        control_channels: channels of the control image (e.g. 3 for a previous RGB frame).

    ``forward(x, control_image, emb)``: x (B, in_channels, H, W), the UNet's input;
    control_image (B, control_channels, H, W); emb from ``unet.embed`` or None → list of
    L + 1 residuals shaped like ``unet.encode(x)``.
    """

    def __init__(self, unet: UNet, control_channels: int):
        super().__init__()
        if not isinstance(control_channels, int) or control_channels < 1:
            raise ValueError(f"control_channels: expected a positive int, got {control_channels!r}")
        self.in_channels, self.control_channels = unet.in_channels, control_channels
        self.shuffle_factor, self.size_multiple = unet.shuffle_factor, unet.size_multiple
        self.encoder = copy.deepcopy(unet.encoder)
        s = unet.shuffle_factor
        self.hint = nn.Conv2d(control_channels * s * s, unet.channels[0], 3, padding=1)
        widths = [*unet.channels, unet.channels[-1]]
        self.zero_convs = nn.ModuleList(nn.Conv2d(c, c, 1) for c in widths)
        for conv in [self.hint, *self.zero_convs]:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(
        self, x: torch.Tensor, control_image: torch.Tensor, emb: torch.Tensor | None = None
    ) -> list[torch.Tensor]:
        _check_image(x, self.in_channels, self.size_multiple, "x")
        _check_image(control_image, self.control_channels, self.size_multiple, "control_image")
        if control_image.shape[0] != x.shape[0] or control_image.shape[2:] != x.shape[2:]:
            raise ValueError(
                f"control_image: expected batch and size of x {tuple(x.shape)}, got "
                f"{tuple(control_image.shape)}"
            )
        s = self.shuffle_factor
        features = self.encoder(_unshuffle(x, s), emb, self.hint(_unshuffle(control_image, s)))
        return [conv(f) for conv, f in zip(self.zero_convs, features, strict=True)]
