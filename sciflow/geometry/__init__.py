"""Pure tensor geometry (imports only torch). Import the modules by name:

- ``from sciflow.geometry import quaternion``: unit quaternions WXYZ (q ≡ −q): products, matrices,
  exp/log, SLERP, angles, uniform sampling;
- ``from sciflow.geometry import so3``: rotation matrices: hat/vee, Rodrigues exp, robust log,
  distance, uniform and IGSO(3) sampling;
- ``from sciflow.geometry import torus``: the flat torus of period L: wrap, exp/log maps, uniform
  sampling, per-set mean removal (padded+mask or flat+index).
"""
