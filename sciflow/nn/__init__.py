"""Neural-network building blocks shared by the domains."""

from sciflow.nn.embeddings import FourierTimeEmbedding
from sciflow.nn.mlp import StateMLP, mlp

__all__ = ["FourierTimeEmbedding", "StateMLP", "mlp"]
