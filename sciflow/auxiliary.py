"""Auxiliary training losses: extra terms on a network's predicted endpoints.

A flow-matching loss scores velocities; some methods add terms that only make sense on the
predicted clean sample, such as ReQFlow's backbone-atom and pairwise-distance losses. An
:class:`AuxiliaryLoss` receives the network's outputs and the clean data and returns named
per-sample terms, which the engine averages over the batch and adds to the total.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import torch


class AuxiliaryLoss(ABC):
    """An extra loss on endpoint predictions, added to an engine's training loss."""

    @abstractmethod
    def __call__(
        self,
        predicted: Mapping[str, torch.Tensor],
        data: Mapping[str, torch.Tensor],
        t: torch.Tensor,
        context: Mapping[str, object],
    ) -> dict[str, torch.Tensor]:
        """Named per-sample loss terms, each (B,).

        Args:
            predicted: the network's outputs (endpoint predictions), shaped like ``data``.
            data: the clean batch parts x1.
            t: (B,) the training times.
            context: the batch context (``mask``, ``index``...).
        """
