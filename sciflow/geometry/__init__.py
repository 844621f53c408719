"""Pure tensor geometry (imports only torch). Import the modules by name:

- ``from sciflow.geometry import quaternion``: unit quaternions WXYZ (q ≡ −q): products, matrices,
  exp/log, SLERP, angles, uniform sampling;
- ``from sciflow.geometry import so3``: rotation matrices: hat/vee, Rodrigues exp, robust log,
  distance, uniform and IGSO(3) sampling;
- ``from sciflow.geometry import torus``: the flat torus of period L: wrap, exp/log maps, uniform
  sampling, per-set mean removal (padded+mask or flat+index);
- ``from sciflow.geometry import vonmises``: the von Mises distribution: stable log I0 and
  A = I1/I0, entropy, batched sampling with a generator, the circular Bayesian update, the KL.
"""
