"""Domain plugins: discovery through entry points, requirements and availability.

Each domain package exposes a ``PLUGIN`` object (a :class:`DomainPlugin`) and declares it in the
entry-point group ``sciflow.domains`` of its distribution. The engine never imports a domain
directly; it asks this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from importlib.util import find_spec

ENTRY_POINT_GROUP = "sciflow.domains"
AVAILABLE = "available"
PLANNED = "planned"


@dataclass(frozen=True)
class DomainPlugin:
    """What sciflow knows about one domain before importing it.

    Attributes:
        name: the domain's name, equal to its entry-point name (e.g. ``"protein"``).
        summary: one line naming what the domain does and with which method.
        extra: the pip extra that installs ``requires`` (``None`` when nothing is needed).
        requires: import names of the third-party modules the domain needs.
        status: ``"available"`` (implemented in this version) or ``"planned"``.
        module: import path of the domain's package (e.g. ``"sciflow_domains.protein"``).
        sampler: ``"module:Class"`` of the domain's `sciflow.Sampler` subclass, which
            ``load_sampler`` returns for the domain's checkpoints (``None``: the generic one).
    """

    name: str
    summary: str
    extra: str | None
    requires: tuple[str, ...]
    status: str
    module: str | None
    sampler: str | None = None

    def __post_init__(self) -> None:
        if self.status not in (AVAILABLE, PLANNED):
            raise ValueError(
                f"status must be {AVAILABLE!r} or {PLANNED!r}, got {self.status!r} "
                f"for domain {self.name!r}"
            )
        if not isinstance(self.requires, tuple):
            raise TypeError(
                f"requires must be a tuple of module names, got {type(self.requires).__name__}"
            )
        if self.requires and self.extra is None:
            raise ValueError(f"domain {self.name!r} has requirements but no pip extra")

    def missing_requirements(self) -> tuple[str, ...]:
        """Return the modules of ``requires`` that cannot be imported here."""
        return tuple(name for name in self.requires if find_spec(name) is None)

    @property
    def install_command(self) -> str | None:
        """The command that installs this domain's requirements, or ``None`` if it has none."""
        return None if self.extra is None else f'pip install "sciflow[{self.extra}]"'


def _entry_points() -> dict[str, EntryPoint]:
    """Installed domain entry points, by name."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load(ep: EntryPoint) -> DomainPlugin:
    """Load one entry point and check that it is a :class:`DomainPlugin`."""
    plugin = ep.load()
    if not isinstance(plugin, DomainPlugin):
        raise TypeError(
            f"entry point {ep.name!r} ({ep.value}) must name a DomainPlugin, "
            f"got {type(plugin).__name__}"
        )
    return plugin


def list_domains() -> list[str]:
    """Names of the installed domains, sorted."""
    return sorted(_entry_points())


def domain_info() -> list[DomainPlugin]:
    """The installed domains' plugins, sorted by name (requirements are not checked)."""
    eps = _entry_points()
    return [_load(eps[name]) for name in sorted(eps)]


def get_domain(name: str) -> DomainPlugin:
    """Return the plugin of domain ``name`` after checking that its requirements import.

    Raises:
        ValueError: no installed domain is called ``name``.
        ImportError: a required module is missing; the message gives the install command.
    """
    eps = _entry_points()
    if name not in eps:
        raise ValueError(f"unknown domain {name!r}; installed domains: {', '.join(sorted(eps))}")
    plugin = _load(eps[name])
    missing = plugin.missing_requirements()
    if missing:
        raise ImportError(
            f"domain {name!r} needs the missing module(s) {', '.join(missing)}; "
            f"install them with: {plugin.install_command}"
        )
    return plugin


def require_available(plugin: DomainPlugin) -> None:
    """Raise ``RuntimeError`` unless ``plugin`` is implemented in this version of sciflow."""
    if plugin.status != AVAILABLE:
        raise RuntimeError(
            f"domain {plugin.name!r} is {plugin.status}: it is not yet implemented in this "
            f"version of sciflow, so it cannot be trained or sampled"
        )


def format_domain_table(plugins: list[DomainPlugin] | None = None) -> str:
    """A plain-text table of domains: name, status, requirements and summary.

    The requirements column reads ``installed`` or gives the install command.
    ``plugins`` defaults to :func:`domain_info`.
    """
    plugins = domain_info() if plugins is None else plugins
    rows = [("domain", "status", "requirements", "summary")]
    for p in plugins:
        reqs = p.install_command if p.missing_requirements() else "installed"
        rows.append((p.name, p.status, reqs, p.summary))
    return format_table(rows)


def format_table(rows: list[tuple[str, ...]]) -> str:
    """Left-align the columns of ``rows`` (a header row first), two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)
