"""Meta Flow Matching learns what population-blind flow matching cannot: on a tiny letters set
(one letter at many rotations, denoised), the flow conditioned on an embedding of the source
population predicts held-out populations (new rotations) closer in W2 than plain FM trained
with the same network, data, seed and steps."""

from __future__ import annotations

import dataclasses

import lightning as L
import numpy as np
import torch
from sciflow_domains.singlecell.data import PopulationData, PopulationDataModule
from sciflow_domains.singlecell.letters import CONDITION, LettersConfig, letter_pair
from sciflow_domains.singlecell.metrics import wasserstein
from sciflow_domains.singlecell.nets import PopulationFlowNet
from sciflow_domains.singlecell.sampler import SingleCellSampler
from sciflow_domains.singlecell.task import SingleCellTask

from sciflow.engine import Engine, FlowComponent
from sciflow.manifolds import Euclidean

LETTERS = LettersConfig(font_size=40, max_cells=200)


def _tiny_letters() -> PopulationData:
    """48 training rotations of "L"; 4 held-out rotations (other random angles) of it."""
    train = [letter_pair("L", "train", r, LETTERS, seed=0) for r in range(48)]
    heldout = [
        dataclasses.replace(letter_pair("L", "test", r, LETTERS, seed=0), population=f"L-new{r}")
        for r in range(4)
    ]
    splits = {"train": train, "val": [], "test": heldout}
    return PopulationData.from_splits(splits, conditions=(CONDITION,), features=("x", "y"))


def _fit_and_score(mode: str, data: PopulationData, steps: int) -> list[float]:
    L.seed_everything(0, verbose=False)
    module = PopulationDataModule(
        cells_per_population=128, populations_per_batch=4, batches_per_epoch=50
    )
    module.data = data
    engine = Engine({"x": FlowComponent(Euclidean(2), layout="indexed")})

    def network(eng):
        return PopulationFlowNet(
            eng, mode=mode, hidden=64, depth=3, time_dim=16, fourier_features=16,
            embed_dim=16, gnn_layers=2, knn=8,
        )  # fmt: skip

    task = SingleCellTask(engine, network, lr=3e-3, ema_decay=0.0)
    trainer = L.Trainer(
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, module)
    sampler = SingleCellSampler(task, use_ema=False)
    scores = []
    for pair in data.splits["test"]:
        res = sampler.sample(source={pair.population: pair.source}, num_steps=20, seed=0)
        scores.append(wasserstein(res.samples["x"].numpy(), pair.target))
    return scores


def test_mfm_beats_fm_on_unseen_populations():
    torch.set_num_threads(1)
    data = _tiny_letters()
    fm = _fit_and_score("fm", data, steps=1500)
    mfm = _fit_and_score("mfm", data, steps=1500)
    # Measured: FM 0.363, MFM 0.314 (mean W2); MFM is closer on every held-out rotation.
    assert np.mean(mfm) < 0.93 * np.mean(fm), (fm, mfm)
    assert sum(m < f for m, f in zip(mfm, fm, strict=True)) >= 3, (fm, mfm)
