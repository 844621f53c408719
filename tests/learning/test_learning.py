"""Learning tests: a small network learns a known distribution on R², T² and SO(3).

Each trains a `StateMLP` with the engine's loss for a few hundred steps and compares samples from
the trained and the untrained network with a held-out set by exact W2 under the manifold's
geodesic metric. The bounds are stated absolutely and relative to the untrained baseline.
"""

import torch

from sciflow.engine import Engine, FlowComponent
from sciflow.evaluation.distances import wasserstein
from sciflow.nn import StateMLP
from sciflow.toy.distributions import GaussianMixture2D, SE3Mixture, TorusMixture
from sciflow.training.loop import train_steps

NUM_EVAL = 512


def _learn(distribution, parts, steps=2000, batch_size=256, coupling=None, hidden=128):
    torch.manual_seed(0)
    manifolds = {k: v for k, v in distribution.manifolds().items() if k in parts}
    engine = Engine({k: FlowComponent(m) for k, m in manifolds.items()}, coupling=coupling)
    network = StateMLP(engine, hidden=hidden, depth=3)

    def draw(generator):
        return {k: v for k, v in distribution.sample(batch_size, generator).items() if k in parts}

    held_out = draw_n(distribution, parts, NUM_EVAL, seed=123)

    def sample():
        generator = torch.Generator().manual_seed(9)
        return engine.sample(network, NUM_EVAL, num_steps=50, generator=generator).x

    before = wasserstein(sample(), held_out, manifolds)
    losses = train_steps(engine, network, draw, steps, lr=3e-3, seed=1)
    after = wasserstein(sample(), held_out, manifolds)
    floor = wasserstein(draw_n(distribution, parts, NUM_EVAL, seed=456), held_out, manifolds)
    return before, after, floor, losses


def draw_n(distribution, parts, n, seed):
    data = distribution.sample(n, torch.Generator().manual_seed(seed))
    return {k: v for k, v in data.items() if k in parts}


def test_learns_gaussian_mixture_on_r2():
    before, after, floor, losses = _learn(GaussianMixture2D(), ["x"])
    print(f"R2: W2 untrained {before:.3f}, trained {after:.3f}, data floor {floor:.3f}")
    assert after < 0.9 and after < 0.25 * before


def test_learns_wrapped_mixture_on_torus():
    before, after, floor, losses = _learn(TorusMixture(), ["angles"])
    print(f"T2: W2 untrained {before:.3f}, trained {after:.3f}, data floor {floor:.3f}")
    assert after < 0.6 and after < 0.35 * before


def test_learns_rotation_mixture_on_so3():
    before, after, floor, losses = _learn(SE3Mixture(), ["rot"])
    print(f"SO3: W2 untrained {before:.3f}, trained {after:.3f}, data floor {floor:.3f}")
    assert after < 0.6 and after < 0.35 * before
