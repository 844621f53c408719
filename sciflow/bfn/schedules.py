"""Entropy-linear accuracy schedules for the von Mises (periodic) Bayesian flow (engine-math M4).

Given n steps and the final concentration β1, the sender accuracies α_1..α_n are chosen so that the
entropy of the expected accumulated concentration falls linearly in t_i = i/n, from
H(0) = log 2π to H(β1). First the targets: β_i solves H(β_i) = (1 − t_i)·log 2π + t_i·H(β1). Then
α_1 = β_1 (the first update starts from c = 0) and, for i ≥ 2, α_i is the root of

    E_y |c e^{i m} + α_i e^{i y}| = β_i,    y ~ vM(x, α_i),

where the law of the state (m, c) before step i is modelled by one of two methods:

- ``"crysbfn"`` (CrysBFN, Wu et al. 2025): a fixed state (m, c) = (x, β_{i−1}), i.e. the previous
  target concentration centred on the data. The expectation is a 1-D integral over y, evaluated by
  quadrature (the noise-free limit of CrysBFN's Monte Carlo; it reproduces their published n = 10
  schedule to three digits). The real flow's m scatters around x, so its E[c_i] falls short of
  β_i (by up to ~11 % for n = 10, 15 % for n = 100): H(E[c_i]) is linear only approximately
  (up to ~0.08–0.11 nats off).
- ``"flow"``: the state is the flow itself, simulated by ``num_mc`` particles c e^{im} = Σ_{j<i}
  α_j e^{i y_j} (seeded), so E[c_i] = β_i holds for the simulated flow and H(E[c_i]) is linear up
  to Monte-Carlo error. The sender draws of a step are inverse-CDF transforms of fixed stratified
  uniforms, so the particle mean is a continuous function of α for the root finder.

``load_alphas`` returns shipped values (``sciflow/bfn/data/vonmises_alphas.json``, β1 = 1e3,
n ∈ {10, 20, 50, 100, 200, 500, 1000}, both methods), else a disk cache under
``$SCIFLOW_CACHE_DIR`` (default ``~/.cache/sciflow``), else computes and caches; results are
memoised in-process. ``python -m sciflow.bfn.schedules --write`` regenerates the shipped file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from scipy.optimize import brentq

from sciflow.atomic import atomic_write
from sciflow.geometry import vonmises

ScheduleMethod = Literal["crysbfn", "flow"]
METHODS = ("crysbfn", "flow")
SHIPPED_STEPS = (10, 20, 50, 100, 200, 500, 1000)
SHIPPED_BETA1 = 1e3
SHIPPED_FILE = Path(__file__).parent / "data" / "vonmises_alphas.json"
DEFAULT_NUM_MC = 200_000
QUADRATURE_POINTS = 4096
# The sender density exp(α(cos y − 1)) is below e^{-72} beyond 12 standard deviations (1/√α).
_WINDOW_SIGMAS = 12.0

_MEMO: dict[tuple[int, float, str], torch.Tensor] = {}


# -- the targets --------------------------------------------------------------------------------
def _entropy(kappa: float) -> float:
    return float(vonmises.entropy(torch.tensor(kappa, dtype=torch.float64)))


def target_concentrations(num_steps: int, beta1: float) -> np.ndarray:
    """β_1..β_n (n,) with H(β_i) = (1 − i/n)·log 2π + (i/n)·H(β1), H the von Mises entropy."""
    h0, h1 = vonmises.LOG_TWO_PI, _entropy(beta1)
    betas = []
    for i in range(1, num_steps + 1):
        t = i / num_steps
        target = (1 - t) * h0 + t * h1
        if i == num_steps:
            betas.append(beta1)
        else:
            betas.append(brentq(lambda k, e=target: _entropy(k) - e, 0.0, beta1, xtol=1e-14))
    return np.asarray(betas)


# -- the sender distribution on a grid -----------------------------------------------------------
def _sender_grid(alpha: float, size: int = QUADRATURE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Midpoint grid y (size,) over the support of vM(0, α) (truncated at 12/√α when that is
    below π) and the normalised quadrature weights (size,) of the density on it."""
    wide = alpha * math.pi**2 <= _WINDOW_SIGMAS**2
    half = math.pi if wide else _WINDOW_SIGMAS / math.sqrt(alpha)
    y = -half + 2 * half * (np.arange(size) + 0.5) / size
    w = np.exp(alpha * (np.cos(y) - 1.0))
    return y, w / w.sum()


def _mean_concentration_fixed(prev: float, alpha: float) -> float:
    """E|prev + α e^{iy}|, y ~ vM(0, α), by quadrature (the ``"crysbfn"`` state model)."""
    y, w = _sender_grid(alpha)
    return float(np.dot(w, np.abs(prev + alpha * np.exp(1j * y))))


def _sender_directions(alpha: float, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cos y, sin y) of the inverse-CDF draws y of vM(0, α) at sorted uniforms ``u`` (N,).

    Linear interpolation of the tabulated CDF and of (cos, sin) on the grid: continuous in α,
    and within ~3e-7 of the exact transform (the chord error of the 4096-point grid).
    """
    y, w = _sender_grid(alpha)
    cdf = np.cumsum(w) - 0.5 * w  # CDF at the grid points (midpoint rule)
    return np.interp(u, cdf, np.cos(y)), np.interp(u, cdf, np.sin(y))


def _mean_concentration_flow(z: tuple[np.ndarray, np.ndarray], alpha: float, u: np.ndarray):
    """Mean over particles z = (re, im) of |z + α e^{iy}|, y the sender draws at ``u``."""
    cos, sin = _sender_directions(alpha, u)
    return float(np.sqrt(np.square(z[0] + alpha * cos) + np.square(z[1] + alpha * sin)).mean())


def _stratified_uniforms(rng: np.random.Generator, size: int) -> np.ndarray:
    """Sorted stratified uniforms (size,): one draw in each interval [k/size, (k+1)/size)."""
    return (np.arange(size) + rng.random(size)) / size


def _root_alpha(mean_concentration, target: float, start: float) -> float:
    """The α > 0 at which the increasing function ``mean_concentration(α)`` equals ``target``."""
    hi = max(start, 1e-6)
    while mean_concentration(hi) < target:
        hi *= 2.0
    return brentq(lambda a: mean_concentration(a) - target, 0.0, hi, xtol=1e-12, rtol=1e-10)


# -- the schedules ---------------------------------------------------------------------------------
def entropy_linear_alphas(
    num_steps: int,
    beta1: float = SHIPPED_BETA1,
    method: ScheduleMethod = "crysbfn",
    num_mc: int = DEFAULT_NUM_MC,
    seed: int = 0,
) -> torch.Tensor:
    """Sender accuracies α_1..α_n, (n,) float64, for an entropy-linear von Mises flow.

    num_steps: n ≥ 1; beta1: the target concentration β_n > 0; method: ``"crysbfn"``
    (deterministic quadrature; ``num_mc`` and ``seed`` are not used) or ``"flow"`` (``num_mc``
    particles drawn with numpy's generator seeded by ``seed``). See the module docstring.
    """
    _check_args(num_steps, beta1, method)
    betas = target_concentrations(num_steps, float(beta1))
    alphas = [betas[0]]
    if method == "crysbfn":
        for i in range(1, num_steps):
            fn = lambda a, prev=betas[i - 1]: _mean_concentration_fixed(prev, a)  # noqa: E731
            alphas.append(_root_alpha(fn, betas[i], betas[i] - betas[i - 1]))
        return torch.tensor(alphas, dtype=torch.float64)
    if isinstance(num_mc, bool) or not isinstance(num_mc, int) or num_mc < 100:
        raise ValueError(f"num_mc: expected an int >= 100, got {num_mc!r}")
    rng = np.random.default_rng(seed)
    cos, sin = _sender_directions(alphas[0], _stratified_uniforms(rng, num_mc))
    z = (alphas[0] * cos, alphas[0] * sin)
    for i in range(1, num_steps):
        order = rng.permutation(num_mc)  # pair the sorted uniforms with particles at random
        z = (z[0][order], z[1][order])
        u = _stratified_uniforms(rng, num_mc)
        alpha = _root_alpha(
            lambda a, u=u, z=z: _mean_concentration_flow(z, a, u),
            betas[i],
            betas[i] - betas[i - 1],
        )
        cos, sin = _sender_directions(alpha, u)
        z = (z[0] + alpha * cos, z[1] + alpha * sin)
        alphas.append(alpha)
    return torch.tensor(alphas, dtype=torch.float64)


def _check_args(num_steps: object, beta1: object, method: object) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps: expected a positive int, got {num_steps!r}")
    if isinstance(beta1, bool) or not isinstance(beta1, (int, float)):
        raise TypeError(f"beta1: expected a positive real number, got {type(beta1).__name__}")
    if not 0 < beta1 < float("inf"):
        raise ValueError(f"beta1: expected a finite positive number, got {beta1!r}")
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")


# -- shipped values, disk cache, memo --------------------------------------------------------------
def cache_dir() -> Path:
    """``$SCIFLOW_CACHE_DIR/bfn`` (default ``~/.cache/sciflow/bfn``)."""
    root = os.environ.get("SCIFLOW_CACHE_DIR") or Path.home() / ".cache" / "sciflow"
    return Path(root) / "bfn"


def _cache_path(num_steps: int, beta1: float, method: str) -> Path:
    return cache_dir() / f"vonmises_alphas_n{num_steps}_b{beta1:g}_{method}.json"


def _write_json_atomic(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and os.replace."""
    with atomic_write(path, "w") as handle:
        json.dump(data, handle, indent=1)


def _read_shipped(num_steps: int, beta1: float, method: str) -> list[float] | None:
    if beta1 != SHIPPED_BETA1 or num_steps not in SHIPPED_STEPS or not SHIPPED_FILE.exists():
        return None
    shipped = json.loads(SHIPPED_FILE.read_text())
    return shipped["schedules"].get(method, {}).get("alphas", {}).get(str(num_steps))


def _read_cache(path: Path, num_steps: int) -> list[float] | None:
    try:
        alphas = json.loads(path.read_text())["alphas"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return alphas if isinstance(alphas, list) and len(alphas) == num_steps else None


def load_alphas(
    num_steps: int, beta1: float = SHIPPED_BETA1, method: ScheduleMethod = "crysbfn"
) -> torch.Tensor:
    """α_1..α_n (n,) float64 for ``entropy_linear_alphas(num_steps, beta1, method)``.

    Looks in the in-process memo, the shipped file, then the disk cache (see ``cache_dir``);
    otherwise computes with the default settings and writes the cache atomically. Returns a copy.
    """
    _check_args(num_steps, beta1, method)
    key = (num_steps, float(beta1), method)
    if key not in _MEMO:
        alphas = _read_shipped(*key)
        path = _cache_path(*key)
        if alphas is None:
            alphas = _read_cache(path, num_steps)
        if alphas is None:
            alphas = entropy_linear_alphas(num_steps, float(beta1), method).tolist()
            meta = _method_meta(method, DEFAULT_NUM_MC, 0)
            _write_json_atomic(path, {**meta, "beta1": float(beta1), "alphas": alphas})
        _MEMO[key] = torch.tensor(alphas, dtype=torch.float64)
    return _MEMO[key].clone()


def _method_meta(method: str, num_mc: int, seed: int) -> dict:
    if method == "crysbfn":
        return {"method": method, "quadrature_points": QUADRATURE_POINTS}
    return {"method": method, "num_mc": num_mc, "seed": seed}


def write_shipped(num_mc: int = DEFAULT_NUM_MC, seed: int = 0, path: Path = SHIPPED_FILE) -> dict:
    """Recompute every shipped schedule and write them to ``path``; returns the timings (s)."""
    data = {"beta1": SHIPPED_BETA1, "target": "H(E[c_i]) linear in t_i = i/n", "schedules": {}}
    timings = {}
    for method in METHODS:
        start = time.perf_counter()
        alphas = {
            str(n): entropy_linear_alphas(n, SHIPPED_BETA1, method, num_mc, seed).tolist()
            for n in SHIPPED_STEPS
        }
        timings[method] = time.perf_counter() - start
        data["schedules"][method] = {**_method_meta(method, num_mc, seed), "alphas": alphas}
    _write_json_atomic(path, data)
    return timings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help=f"regenerate {SHIPPED_FILE.name}")
    parser.add_argument("--num-mc", type=int, default=DEFAULT_NUM_MC)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.write:
        parser.print_help()
        return
    timings = write_shipped(args.num_mc, args.seed)
    print(f"wrote {SHIPPED_FILE}: " + ", ".join(f"{m} {s:.1f} s" for m, s in timings.items()))


if __name__ == "__main__":
    main()
