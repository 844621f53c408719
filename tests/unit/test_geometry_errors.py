"""Bad input to the geometry functions and manifolds raises errors that name the argument."""

import math

import pytest
import torch

from sciflow.geometry import quaternion as Q
from sciflow.geometry import so3, torus
from sciflow.manifolds import Euclidean, FlatTorus, Product, Sphere, UnitQuaternion

Q4 = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
V3 = torch.zeros(1, 3)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: Q.multiply(torch.zeros(2, 3), Q4), "p"),
        (lambda: Q.multiply(Q4, torch.zeros(2, 5)), "q"),
        (lambda: Q.conjugate(torch.zeros(3)), "q"),
        (lambda: Q.to_matrix(torch.zeros(2, 3)), "q"),
        (lambda: Q.from_matrix(torch.zeros(2, 3, 4)), "R"),
        (lambda: Q.exp(torch.zeros(2, 4)), "r"),
        (lambda: Q.log(torch.zeros(2, 3)), "q"),
        (lambda: Q.rotate(Q4, torch.zeros(1, 4)), "x"),
        (lambda: Q.slerp(Q4, torch.zeros(1, 3), 0.5), "q1"),
        (lambda: Q.angle(torch.zeros(1, 3), Q4), "q0"),
        (lambda: Q.check_unit(torch.tensor(1.0), "rot"), "rot"),
        (lambda: so3.hat(torch.zeros(2, 2)), "w"),
        (lambda: so3.vee(torch.zeros(3)), "W"),
        (lambda: so3.exp(torch.zeros(4)), "w"),
        (lambda: so3.log(torch.zeros(3, 4)), "R"),
        (lambda: so3.dist(torch.eye(3), torch.zeros(2, 2)), "R2"),
    ],
)
def test_wrong_shapes_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}: expected .*shape"):
        call()


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: Q.multiply([1.0, 0, 0, 0], Q4), "p"),
        (lambda: Q.log(torch.tensor([[1, 0, 0, 0]])), "q"),  # integer tensor
        (lambda: Q.exp(None), "r"),
        (lambda: Q.slerp(Q4, Q4, "half"), "t"),
        (lambda: so3.log([[1.0, 0, 0]] * 3), "R"),
        (lambda: torus.wrap([0.3], 1.0), "delta"),
        (lambda: torus.expmap(torch.zeros(3), torch.zeros(3, dtype=torch.long)), "v"),
        (lambda: torus.wrap(torch.zeros(3), period="1"), "period"),
        (lambda: so3.igso3_sample(3, sigma=None), "sigma"),
    ],
)
def test_wrong_types_raise_type_error_naming_the_argument(call, name):
    with pytest.raises(TypeError, match=rf"^{name}: expected"):
        call()


def test_non_unit_quaternions_are_reported_with_the_worst_norm():
    q = torch.tensor([[1.0, 0, 0, 0], [0.0, 2.0, 0, 0], [0.0, 0, 0.9, 0]])
    with pytest.raises(ValueError, match=r"^rot: .*\(3, 4\).*2 non-unit.*worst norm 2\b"):
        Q.check_unit(q, "rot")
    with pytest.raises(ValueError, match=r"^x0\['rot'\]: .*worst norm 2\b"):
        Product({"rot": UnitQuaternion()}).check_point({"rot": q}, name="x0")
    with pytest.raises(ValueError, match=r"^y: .*worst norm 3\b"):
        Sphere(2).check_point(torch.tensor([[0.0, 3.0, 0.0]]), name="y")
    with pytest.raises(ValueError, match=r"^frac: .*\[0, 1\).*1\.5"):
        FlatTorus(2).check_point(torch.tensor([[0.2, 1.5]]), name="frac")


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_bad_positive_parameters(bad):
    with pytest.raises(ValueError, match="^period: "):
        torus.wrap(torch.zeros(2), bad)
    with pytest.raises(ValueError, match="^sigma: "):
        so3.igso3_density_angle(torch.zeros(2), bad)
    with pytest.raises(ValueError, match="^period: "):
        FlatTorus(2, period=bad)


def test_bad_manifold_construction_and_shapes():
    with pytest.raises(ValueError, match="^dim: "):
        FlatTorus(0)
    with pytest.raises(ValueError, match="^dim: "):
        Sphere(1.5)
    with pytest.raises(TypeError, match="^parts: "):
        Product([UnitQuaternion()])
    with pytest.raises(TypeError, match="^parts: "):
        Product({"rot": "so3"})
    with pytest.raises(ValueError, match=r"^v: .*shape \(\.\.\., 3\)"):
        FlatTorus(3).expmap(torch.zeros(2, 3), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"^y: "):
        Sphere(2).logmap(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"^u: "):
        UnitQuaternion().dexpinv(Q4, torch.zeros(1, 4), V3)


def test_product_rejects_mismatched_keys_and_shapes():
    manifold = Product({"rot": UnitQuaternion(), "lattice": Euclidean(9)})
    x = manifold.random(4)
    with pytest.raises(ValueError, match=r"^y: .*missing \['lattice'\], extra \['trans'\]"):
        manifold.logmap(x, {"rot": x["rot"], "trans": torch.zeros(4, 3)})
    with pytest.raises(TypeError, match="^x: expected a dict"):
        manifold.projx(x["rot"])
    y = {"rot": manifold.parts["rot"].random(4, 2), "lattice": torch.zeros(4, 9)}
    z = {"rot": manifold.parts["rot"].random(4, 2), "lattice": torch.zeros(4, 9)}
    with pytest.raises(ValueError, match="leading"):
        manifold.dist(y, z)


def test_remove_mean_rejects_bad_layouts():
    v = torch.zeros(2, 3, 3)
    with pytest.raises(ValueError, match="not both"):
        torus.remove_mean(v, mask=torch.ones(2, 3, dtype=torch.bool), index=torch.zeros(6))
    with pytest.raises(ValueError, match=r"^mask: expected shape \(2, 3\)"):
        torus.remove_mean(v, mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="^mask: "):
        torus.remove_mean(v, mask=torch.ones(2, 3))
    with pytest.raises(TypeError, match="^index: "):
        torus.remove_mean(torch.zeros(6, 3), index=torch.zeros(6))
    with pytest.raises(ValueError, match="^index: "):
        torus.remove_mean(torch.zeros(6, 3), index=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="^v: "):
        torus.remove_mean(torch.zeros(3))
