"""Plugin entry of the protein domain (entry point ``sciflow.domains: protein``)."""

from sciflow.registry import DomainPlugin

PLUGIN = DomainPlugin(
    name="protein",
    summary="protein backbone generation with ReQFlow (rectified quaternion flow, SO(3)×R³)",
    extra="protein",
    requires=("biotite",),
    status="available",
    module="sciflow_domains.protein",
    sampler="sciflow_domains.protein.sampler:ProteinSampler",
)
