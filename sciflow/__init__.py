"""sciflow: flow matching and Bayesian flow networks on manifolds, for scientific data.

The analysis-script API::

    import sciflow
    sampler = sciflow.load_sampler("runs/toy/last.ckpt")
    result = sampler.sample(num_samples=16, num_steps=50, seed=0)
"""

__version__ = "0.1.0"

__all__ = ["SampleResult", "Sampler", "list_domains", "load_sampler"]


def __getattr__(name: str):
    # Imported lazily so that `import sciflow` stays cheap (no Lightning until it is needed).
    if name in __all__:
        from sciflow import api

        return getattr(api, name)
    raise AttributeError(f"module 'sciflow' has no attribute {name!r}")
