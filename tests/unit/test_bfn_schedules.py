"""The entropy-linear von Mises accuracy schedules: targets, both fitting methods, shipped file,
disk cache and memo."""

import json
import math

import pytest
import torch

from sciflow.bfn import schedules
from sciflow.geometry import vonmises

F64 = torch.float64
# CrysBFN's published n = 10 schedule (β1 = 1e3), as quoted in docs/methods/crystal.md §1.3.
CRYSBFN_N10 = [1.48, 1.59, 2.63, 5.39, 11.4, 24.5, 53.0, 114.7, 248.6, 539.0]


def _linear_entropy(num_steps: int, beta1: float = 1e3) -> torch.Tensor:
    t = torch.arange(1, num_steps + 1, dtype=F64) / num_steps
    return (1 - t) * math.log(2 * math.pi) + t * vonmises.entropy(torch.tensor(beta1, dtype=F64))


def _flow_mean_concentration(alphas: torch.Tensor, num_samples: int, seed: int = 0):
    """E[c_i] (n,) of the simulated flow c_i e^{im_i} = Σ_{j≤i} α_j e^{iy_j}, y_j ~ vM(0, α_j),
    drawn with the geometry sampler (independent of the schedule's own Monte Carlo)."""
    g = torch.Generator().manual_seed(seed)
    y = vonmises.sample(torch.zeros(num_samples, 1, dtype=F64), alphas, g)
    c = torch.hypot((alphas * y.cos()).cumsum(-1), (alphas * y.sin()).cumsum(-1))
    return c.mean(0)


def test_targets_have_exactly_linear_entropy():
    betas = torch.tensor(schedules.target_concentrations(50, 1e3))
    torch.testing.assert_close(vonmises.entropy(betas), _linear_entropy(50), rtol=0, atol=1e-12)
    assert betas[-1].item() == 1e3 and (betas.diff() > 0).all()


def test_crysbfn_method_reproduces_the_published_schedule():
    alphas = schedules.entropy_linear_alphas(10, 1e3, method="crysbfn")
    assert alphas.dtype == F64 and alphas.shape == (10,)
    torch.testing.assert_close(alphas, torch.tensor(CRYSBFN_N10, dtype=F64), rtol=5e-3, atol=0)


def test_crysbfn_method_solves_its_equation_by_monte_carlo():
    # E|β_{i−1} + α_i e^{iy}| = β_i with y ~ vM(0, α_i): the previous target centred on the data
    alphas = schedules.load_alphas(10)
    betas = torch.tensor(schedules.target_concentrations(10, 1e3))
    y = vonmises.sample(
        torch.zeros(200_000, 1, dtype=F64), alphas[1:], torch.Generator().manual_seed(3)
    )
    c = torch.hypot(betas[:-1] + alphas[1:] * y.cos(), alphas[1:] * y.sin())
    torch.testing.assert_close(c.mean(0), betas[1:], rtol=2e-3, atol=0)


def test_crysbfn_method_is_only_approximately_linear_for_the_real_flow():
    # documents the module docstring: the real flow's m scatters, so E[c_i] falls short of β_i
    mean_c = _flow_mean_concentration(schedules.load_alphas(10), 50_000)
    deviation = (vonmises.entropy(mean_c) - _linear_entropy(10)).abs().max().item()
    assert 0.05 < deviation < 0.1


@pytest.mark.parametrize(("num_steps", "num_samples"), [(10, 100_000), (100, 10_000)])
def test_flow_method_makes_the_entropy_of_the_mean_concentration_linear(num_steps, num_samples):
    alphas = schedules.load_alphas(num_steps, method="flow")
    mean_c = _flow_mean_concentration(alphas, num_samples, seed=num_steps)
    deviation = (vonmises.entropy(mean_c) - _linear_entropy(num_steps)).abs().max().item()
    assert deviation < 0.02  # observed: 2e-4 nats (n = 10) and 2e-3 (n = 100, MC noise)
    betas = torch.tensor(schedules.target_concentrations(num_steps, 1e3))
    torch.testing.assert_close(mean_c, betas, rtol=0.02, atol=0)


@pytest.mark.parametrize("method", schedules.METHODS)
@pytest.mark.parametrize("num_steps", schedules.SHIPPED_STEPS)
def test_shipped_schedules_are_positive_and_reach_beta1(method, num_steps):
    alphas = schedules.load_alphas(num_steps, method=method)
    assert alphas.shape == (num_steps,) and alphas.dtype == F64
    assert (alphas > 0).all() and torch.isfinite(alphas).all()
    assert 1e3 <= alphas.sum().item() < 1.5e3  # Σα ≥ β1: accuracies do not add on the circle


@pytest.mark.parametrize("method", schedules.METHODS)
def test_shipped_file_matches_recomputation(method):
    shipped = json.loads(schedules.SHIPPED_FILE.read_text())
    assert shipped["beta1"] == 1e3
    meta = shipped["schedules"][method]
    assert meta["method"] == method
    kwargs = {"num_mc": meta["num_mc"], "seed": meta["seed"]} if method == "flow" else {}
    again = schedules.entropy_linear_alphas(10, 1e3, method=method, **kwargs)
    torch.testing.assert_close(
        again, torch.tensor(meta["alphas"]["10"], dtype=F64), rtol=1e-9, atol=0
    )


def test_load_alphas_caches_on_disk_and_in_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("SCIFLOW_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(schedules, "_MEMO", {})
    first = schedules.load_alphas(7, beta1=200.0)
    path = tmp_path / "bfn" / "vonmises_alphas_n7_b200_crysbfn.json"
    saved = json.loads(path.read_text())
    assert saved["method"] == "crysbfn" and saved["beta1"] == 200.0
    torch.testing.assert_close(torch.tensor(saved["alphas"], dtype=F64), first, rtol=0, atol=0)
    assert not list(path.parent.glob("*.tmp"))

    def fail(*args, **kwargs):
        raise AssertionError("recomputed instead of using the cache")

    monkeypatch.setattr(schedules, "entropy_linear_alphas", fail)
    first[0] = -1.0  # callers get copies
    assert schedules.load_alphas(7, beta1=200.0)[0] > 0  # memo
    monkeypatch.setattr(schedules, "_MEMO", {})
    torch.testing.assert_close(schedules.load_alphas(7, beta1=200.0)[1:], first[1:])  # disk


def test_corrupt_cache_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("SCIFLOW_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(schedules, "_MEMO", {})
    path = tmp_path / "bfn" / "vonmises_alphas_n3_b50_crysbfn.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    alphas = schedules.load_alphas(3, beta1=50.0)
    assert alphas.shape == (3,) and json.loads(path.read_text())["alphas"] == alphas.tolist()


def test_single_step_schedule_is_beta1():
    for method in schedules.METHODS:
        alphas = schedules.entropy_linear_alphas(1, 5.0, method=method, num_mc=1000)
        torch.testing.assert_close(alphas, torch.tensor([5.0], dtype=F64))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"num_steps": 0}, "num_steps"),
        ({"num_steps": 2.5}, "num_steps"),
        ({"num_steps": 5, "beta1": -1.0}, "beta1"),
        ({"num_steps": 5, "method": "cosine"}, "method"),
        ({"num_steps": 5, "method": "flow", "num_mc": 10}, "num_mc"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name):
    with pytest.raises(ValueError, match=name):
        schedules.entropy_linear_alphas(**kwargs)
