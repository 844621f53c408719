"""Samplers' integrators: manifold-aware ODE solvers (RKMK and dopri5) and Euler–Maruyama."""

from sciflow.solvers.ode import METHODS, TABLEAUS, ButcherTableau, ODESolution, solve_ode
from sciflow.solvers.sde import solve_sde

__all__ = ["METHODS", "TABLEAUS", "ButcherTableau", "ODESolution", "solve_ode", "solve_sde"]
