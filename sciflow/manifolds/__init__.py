"""Manifolds with closed-form exp/log maps: the spaces the parts of a state live on."""

from sciflow.manifolds.base import Manifold
from sciflow.manifolds.euclidean import Euclidean
from sciflow.manifolds.product import Product
from sciflow.manifolds.quaternion import UnitQuaternion
from sciflow.manifolds.rotation_matrix import RotationMatrix
from sciflow.manifolds.sphere import Sphere
from sciflow.manifolds.torus import FlatTorus

__all__ = [
    "Euclidean",
    "FlatTorus",
    "Manifold",
    "Product",
    "RotationMatrix",
    "Sphere",
    "UnitQuaternion",
]
