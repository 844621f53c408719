"""Plugin entry of the medical domain (entry point ``sciflow.domains: medical``)."""

from sciflow.registry import DomainPlugin

PLUGIN = DomainPlugin(
    name="medical",
    summary="longitudinal medical image prediction with ImageFlowNet (latent neural ODE/SDE)",
    extra="medical",
    requires=("nibabel",),
    status="available",
    module="sciflow_domains.medical",
    sampler="sciflow_domains.medical.sampler:MedicalSampler",
)
