"""Plugin entry of the satellite domain (entry point ``sciflow.domains: satellite``)."""

from sciflow.registry import DomainPlugin

PLUGIN = DomainPlugin(
    name="satellite",
    summary="climate-conditioned satellite imagery with EcoMapper (conditional flow matching)",
    extra="satellite",
    requires=("xarray", "rasterio", "skimage"),
    status="available",
    module="sciflow_domains.satellite",
    sampler="sciflow_domains.satellite.sampler:SatelliteSampler",
)
