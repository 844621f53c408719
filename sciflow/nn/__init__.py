"""Neural-network building blocks shared by the domains."""

from sciflow.nn.embeddings import FourierTimeEmbedding
from sciflow.nn.mlp import StateMLP, mlp
from sciflow.nn.unet import ControlBranch, UNet

__all__ = ["ControlBranch", "FourierTimeEmbedding", "StateMLP", "UNet", "mlp"]
