"""Plugin entry of the singlecell domain (entry point ``sciflow.domains: singlecell``)."""

from sciflow.registry import DomainPlugin

PLUGIN = DomainPlugin(
    name="singlecell",
    summary="cell population dynamics with Meta Flow Matching (population-conditioned flows)",
    extra="singlecell",
    requires=("torch_geometric", "anndata", "scanpy"),
    status="available",
    module="sciflow_domains.singlecell",
    sampler="sciflow_domains.singlecell.sampler:SingleCellSampler",
)
