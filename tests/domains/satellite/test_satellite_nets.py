"""Satellite networks: per-field nulls, field dropout, classifier-free guidance, the climate-map
ControlNet branch and the time-series model, on randomly initialised tiny nets."""

from __future__ import annotations

import pytest
import torch
from sciflow_domains.satellite.nets import (
    ClimateMapFlowNet,
    SatelliteFlowNet,
    TimeSeriesFlowNet,
    image_shape,
)
from sciflow_domains.satellite.nets_conditioning import (
    FIELDS,
    KEEP_KEY,
    ConditionEncoder,
    drop_fields,
    guided,
)

from sciflow.engine import Engine, FlowComponent
from sciflow.manifolds import Euclidean

SIZE, B = 16, 4
TINY = dict(base_channels=8, channel_mults=(1, 2), field_dim=8)


def make_engine(size: int = SIZE) -> Engine:
    return Engine({"image": FlowComponent(Euclidean(size), event_shape=(3, size))})


def conditions(generator: torch.Generator, batch: int = B) -> dict:
    """Every field with random valid values, plus a previous frame."""
    return {
        "climate": torch.randn(batch, 3, generator=generator),
        "landcover": torch.randint(0, 17, (batch,), generator=generator),
        "month": torch.randn(batch, 2, generator=generator),
        "location": torch.randn(batch, 3, generator=generator),
        "lag": torch.randint(1, 7, (batch,), generator=generator),
        "previous": torch.rand(batch, 3, SIZE, SIZE, generator=generator) * 2 - 1,
    }


def inputs(seed: int = 0) -> tuple[dict, torch.Tensor, dict]:
    generator = torch.Generator().manual_seed(seed)
    x = {"image": torch.randn(B, 3, SIZE, SIZE, generator=generator)}
    t = torch.rand(B, generator=generator)
    return x, t, conditions(generator)


def changed_conditions(cond: dict) -> dict:
    """Every field of every sample changed (ids moved to another valid id)."""
    other = inputs(seed=1)[2]
    other["landcover"] = (cond["landcover"] + 1) % 17
    other["lag"] = cond["lag"] % 6 + 1
    return other


def seeded(cls, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return cls(make_engine(), **{**TINY, **kwargs}).eval()


def test_engine_shape_is_read_and_checked():
    assert image_shape(make_engine(32)) == (3, 32, 32)
    flat = Engine({"image": FlowComponent(Euclidean(3))})
    with pytest.raises(ValueError, match="event_shape"):
        SatelliteFlowNet(flat)
    with pytest.raises(ValueError, match="multiples of 4"):
        SatelliteFlowNet(make_engine(18), base_channels=8, channel_mults=(1, 2, 2))


def test_omitting_a_field_equals_masking_it_and_equals_a_nan_row():
    torch.manual_seed(0)
    encoder = ConditionEncoder(FIELDS, dim=6)
    _, _, cond = inputs()
    for name in FIELDS:
        absent = encoder({k: v for k, v in cond.items() if k != name}, B)
        hidden = torch.ones(B, dtype=torch.bool)
        hidden[1] = False
        masked = encoder({**cond, KEEP_KEY: {name: hidden}}, B)
        full = encoder(cond, B)
        block = slice(FIELDS.index(name) * 6, (FIELDS.index(name) + 1) * 6)
        assert torch.equal(masked[1], absent[1])  # row 1 hidden: the null embedding
        assert torch.equal(masked[[0, 2, 3]], full[[0, 2, 3]])  # the other rows keep the field
        assert not torch.equal(full[1, block], absent[1, block])
    nan_climate = cond["climate"].clone()
    nan_climate[2] = float("nan")
    with_nan = encoder({**cond, "climate": nan_climate}, B)
    without = encoder({k: v for k, v in cond.items() if k != "climate"}, B)
    assert torch.equal(with_nan[2], without[2]) and torch.isfinite(with_nan).all()
    joint = encoder(cond, B, cond_mask=torch.tensor([True, False, True, True]))
    assert torch.equal(joint[1], encoder({}, B)[1])
    assert torch.equal(joint[0], encoder(cond, B)[0])


def test_null_embeddings_are_per_field_and_learned():
    torch.manual_seed(0)
    encoder = ConditionEncoder(FIELDS, dim=6)
    nulls = encoder({}, 1)[0].reshape(len(FIELDS), 6)
    assert len({tuple(row.tolist()) for row in nulls}) == len(FIELDS)
    assert all(encoder.nulls[name].requires_grad for name in FIELDS)
    encoder({}, 2).sum().backward()
    assert all(encoder.nulls[name].grad.abs().sum() > 0 for name in FIELDS)


@pytest.mark.parametrize("name", ["climate", "landcover", "month", "location"])
def test_each_field_changes_the_output_of_a_random_net(name):
    net = seeded(SatelliteFlowNet)
    x, t, cond = inputs()
    other = changed_conditions(cond)
    base = net(x, t, {"cond": cond})["image"]
    changed = net(x, t, {"cond": {**cond, name: other[name]}})["image"]
    dropped = net(x, t, {"cond": {k: v for k, v in cond.items() if k != name}})["image"]
    assert (base - changed).abs().amax(dim=(1, 2, 3)).min() > 1e-6
    assert (base - dropped).abs().amax(dim=(1, 2, 3)).min() > 1e-6


def test_unconditional_net_ignores_conditions():
    net = seeded(SatelliteFlowNet, fields=[])
    x, t, cond = inputs()
    assert net.model_kind == "unconditional" and net.conditions is None
    assert torch.equal(net(x, t, {"cond": cond})["image"], net(x, t, {})["image"])


def test_field_dropout_rates_and_existing_masks():
    generator = torch.Generator().manual_seed(0)
    cond = conditions(generator, batch=20000)
    prior = torch.zeros(20000, dtype=torch.bool)
    dropped = drop_fields({**cond, KEEP_KEY: {"month": prior}}, FIELDS, 0.2, generator)
    for name in FIELDS:
        kept = dropped[KEEP_KEY][name].float().mean().item()
        assert kept == 0.0 if name == "month" else abs(kept - 0.8) < 0.015
    masks = [dropped[KEEP_KEY][n] for n in ("climate", "landcover")]
    assert not torch.equal(*masks)  # independent per field
    assert KEEP_KEY not in drop_fields(cond, FIELDS, 0.0)
    with pytest.raises(ValueError, match="field_drop_prob"):
        drop_fields(cond, FIELDS, 1.0)


def test_guidance_zero_is_the_unconditional_model_and_one_the_conditional():
    net = seeded(SatelliteFlowNet)
    x, t, cond = inputs()
    null = net(x, t, {})["image"]
    conditional = net(x, t, {"cond": cond})["image"]
    assert torch.equal(guided(net, 0.0)(x, t, {"cond": cond})["image"], null)
    assert torch.equal(guided(net, 1.0)(x, t, {"cond": cond})["image"], conditional)
    strong = guided(net, 3.0)(x, t, {"cond": cond})["image"]
    torch.testing.assert_close(strong, null + 3.0 * (conditional - null))
    engine = make_engine()
    noise = {"image": torch.randn(B, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(5))}
    sample = engine.sample(guided(net, 0.0), B, {"cond": cond}, num_steps=4, x0=noise).x
    unconditional = engine.sample(net, B, {}, num_steps=4, x0=noise).x
    assert torch.equal(sample["image"], unconditional["image"])


def test_control_branch_is_a_no_op_at_init_and_copies_the_base_encoder():
    base = seeded(SatelliteFlowNet, seed=3)
    mapped = seeded(ClimateMapFlowNet, seed=4)
    mapped.load_base_weights(base.state_dict())
    for key, value in base.unet.encoder.state_dict().items():
        assert torch.equal(mapped.control.encoder.state_dict()[key], value)
    x, t, cond = inputs()
    climate_map = torch.randn(B, 3, SIZE, SIZE)
    out = mapped(x, t, {"cond": {**cond, "climate_map": climate_map}})["image"]
    assert torch.equal(out, base(x, t, {"cond": cond})["image"])
    with pytest.raises(ValueError, match="missing"):
        mapped.load_base_weights({k: v for k, v in base.state_dict().items() if "film" not in k})


def test_frozen_base_gives_gradients_to_the_branch_only():
    x, t, cond = inputs()
    for freeze in (True, False):
        net = seeded(ClimateMapFlowNet, freeze_base=freeze).train()
        assert not net.unet.training if freeze else net.unet.training
        with torch.no_grad():  # leave the zero init so gradients reach the branch's inner layers
            for conv in net.control.zero_convs:
                conv.weight.normal_(0, 0.1)
        net(x, t, {"cond": cond})["image"].square().mean().backward()
        for name, param in net.named_parameters():
            in_branch = name.startswith("control.")
            has_grad = param.grad is not None and param.grad.abs().sum() > 0
            if in_branch or not freeze:
                assert param.requires_grad
            else:
                assert not param.requires_grad and param.grad is None, name
            if in_branch and name.startswith("control.zero_convs"):
                assert has_grad, name


def test_climate_map_shares_the_climate_keep_mask():
    base = seeded(SatelliteFlowNet, seed=3)
    mapped = seeded(ClimateMapFlowNet, seed=3)
    with torch.no_grad():  # a trained-looking branch whose residuals are not zero
        for param in mapped.control.parameters():
            param.normal_(0, 0.1)
    x, t, cond = inputs()
    hidden = torch.tensor([True, False, True, False])
    masked = {**cond, KEEP_KEY: {"climate": hidden}}
    out = mapped(x, t, {"cond": masked})["image"]
    reference = base(x, t, {"cond": masked})["image"]
    assert torch.equal(out[~hidden], reference[~hidden])  # climate hidden: no map either
    assert (out[hidden] - reference[hidden]).abs().max() > 1e-4
    broadcast = cond["climate"][:, :, None, None].expand(-1, -1, SIZE, SIZE)
    given = mapped(x, t, {"cond": {**cond, "climate_map": broadcast}})["image"]
    assert torch.equal(given, mapped(x, t, {"cond": cond})["image"])
    null = mapped(x, t, {"cond": cond, "cond_mask": torch.zeros(B, dtype=torch.bool)})["image"]
    assert torch.equal(null, base(x, t, {})["image"])
    with pytest.raises(ValueError, match="climate_map"):
        mapped(x, t, {"cond": {**cond, "climate_map": torch.zeros(B, 3, 8, 8)}})


def test_timeseries_net_reads_the_previous_frame_and_the_lag():
    net = seeded(TimeSeriesFlowNet)
    assert net.fields == FIELDS and net.model_kind == "timeseries"
    x, t, cond = inputs()
    other = changed_conditions(cond)
    base = net(x, t, {"cond": cond})["image"]
    for name in ("previous", "lag"):
        changed = net(x, t, {"cond": {**cond, name: other[name]}})["image"]
        assert (base - changed).abs().amax(dim=(1, 2, 3)).min() > 1e-6, name
    null = guided(net, 0.0)(x, t, {"cond": cond})["image"]
    no_fields = {"previous": cond["previous"]}
    assert torch.equal(null, net(x, t, {"cond": no_fields})["image"])  # previous kept in the null
    with pytest.raises(ValueError, match="previous"):
        net(x, t, {"cond": {k: v for k, v in cond.items() if k != "previous"}})


def test_bad_conditions_name_the_field():
    net = seeded(TimeSeriesFlowNet)
    x, t, cond = inputs()
    for name, value, message in [
        ("landcover", torch.full((B,), 17), r"cond\['landcover'\]: values must lie in \[0, 16\]"),
        ("lag", torch.full((B,), 7), r"cond\['lag'\]: values must lie in \[1, 6\]"),
        ("climate", torch.zeros(B, 4), r"cond\['climate'\]: expected \(4, 3\)"),
        ("month", torch.zeros(B), r"cond\['month'\]: expected \(4, 2\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            net(x, t, {"cond": {**cond, name: value}})
    with pytest.raises(ValueError, match="fields: expected distinct names"):
        SatelliteFlowNet(make_engine(), fields=["climate", "lag"])
    with pytest.raises(ValueError, match="fields: expected distinct names"):
        SatelliteFlowNet(make_engine(), fields=["climate", "climate"])
