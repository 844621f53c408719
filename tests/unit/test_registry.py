"""Domain plugin discovery: entry points, requirements, availability."""

from importlib.metadata import EntryPoint
from importlib.util import find_spec

import pytest

import sciflow.registry as registry
from sciflow.registry import DomainPlugin

SCIENCE_DOMAINS = ("crystal", "medical", "protein", "satellite", "singlecell")
AVAILABLE_DOMAINS = ("crystal", "medical", "protein", "satellite", "singlecell")


def _all_found(name):
    """A stand-in for find_spec that finds every module."""
    return object()


def _none_found(name):
    """A stand-in for find_spec that finds no module."""
    return None


def test_list_domains_has_toy_and_science_domains():
    names = registry.list_domains()
    assert names == sorted(names)
    assert {"toy", *SCIENCE_DOMAINS} <= set(names)


def test_domain_info_matches_entry_points():
    plugins = {p.name: p for p in registry.domain_info()}
    assert set(plugins) == set(registry.list_domains())
    assert plugins["toy"].status == "available"
    assert plugins["toy"].requires == () and plugins["toy"].extra is None
    for name in SCIENCE_DOMAINS:
        plugin = plugins[name]
        assert plugin.status == ("available" if name in AVAILABLE_DOMAINS else "planned")
        assert plugin.extra == name
        assert plugin.requires
        assert plugin.module == f"sciflow_domains.{name}"
    for plugin in plugins.values():
        assert find_spec(plugin.module) is not None


def test_get_domain_toy_is_available():
    plugin = registry.get_domain("toy")
    assert plugin.module == "sciflow.toy"
    registry.require_available(plugin)


def test_get_domain_unknown_lists_installed():
    with pytest.raises(ValueError, match="unknown domain 'chemistry'") as err:
        registry.get_domain("chemistry")
    for name in ("toy", *SCIENCE_DOMAINS):
        assert name in str(err.value)


def test_get_domain_missing_requirement_names_install_command(monkeypatch):
    monkeypatch.setattr(registry, "find_spec", _none_found)
    with pytest.raises(ImportError) as err:
        registry.get_domain("singlecell")
    message = str(err.value)
    assert 'pip install "sciflow[singlecell]"' in message
    for module in ("torch_geometric", "anndata", "scanpy"):
        assert module in message


def test_planned_domain_is_not_available():
    plugin = DomainPlugin("future", "a domain to come", "future", ("nibabel",), "planned", None)
    with pytest.raises(RuntimeError, match="planned.*not yet implemented"):
        registry.require_available(plugin)


def test_entry_point_that_is_not_a_plugin_is_rejected(monkeypatch):
    fake = EntryPoint(name="bogus", value="os.path:join", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [fake])
    assert registry.list_domains() == ["bogus"]
    with pytest.raises(TypeError, match="must name a DomainPlugin"):
        registry.get_domain("bogus")


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"status": "beta"}, ValueError),
        ({"requires": ["biotite"]}, TypeError),
        ({"extra": None}, ValueError),
    ],
)
def test_domain_plugin_validates_fields(kwargs, error):
    fields = dict(
        name="x", summary="s", extra="x", requires=("biotite",), status="planned", module="m"
    )
    with pytest.raises(error):
        DomainPlugin(**{**fields, **kwargs})


def test_format_domain_table(monkeypatch):
    monkeypatch.setattr(registry, "find_spec", _none_found)
    lines = registry.format_domain_table().splitlines()
    assert lines[0].split() == ["domain", "status", "requirements", "summary"]
    assert len(lines) == 1 + len(registry.list_domains())
    rows = {line.split()[0]: line for line in lines[1:]}
    assert "installed" in rows["toy"] and "available" in rows["toy"]
    assert 'pip install "sciflow[medical]"' in rows["medical"]
