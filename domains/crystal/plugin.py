"""Plugin entry of the crystal domain (entry point ``sciflow.domains: crystal``)."""

from sciflow.registry import DomainPlugin

PLUGIN = DomainPlugin(
    name="crystal",
    summary="crystal structure generation with CrysBFN (periodic Bayesian flow networks)",
    extra="crystal",
    requires=("pymatgen",),
    status="available",
    module="sciflow_domains.crystal",
    sampler="sciflow_domains.crystal.sampler:CrystalSampler",
)
