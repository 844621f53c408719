"""The ``sciflow`` console script.

``fit``, ``validate`` and ``test`` are LightningCLI subcommands driven by YAML configs; ``sample``,
``reflow``, ``bench``, ``data`` and ``domains`` are sciflow's own.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

LIGHTNING_COMMANDS = ("fit", "validate", "test")


def _lightning_cli(args: list[str]) -> None:
    from jsonargparse import namespace_to_dict
    from lightning.pytorch import LightningDataModule
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from sciflow.training.checkpoint_io import AtomicCheckpointIO
    from sciflow.training.task import TrainingTask

    class SciflowCLI(LightningCLI):
        """LightningCLI that records the resolved model config inside every checkpoint."""

        def instantiate_classes(self) -> None:
            super().instantiate_classes()
            config = self.config[self.subcommand] if self.subcommand else self.config
            self.model.model_config = namespace_to_dict(config["model"])

        def instantiate_trainer(self, **kwargs):
            trainer = super().instantiate_trainer(**kwargs)
            if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not user-chosen
                trainer.strategy.checkpoint_io = AtomicCheckpointIO()
            return trainer

    SciflowCLI(
        TrainingTask,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        args=args,
        parser_kwargs={"prog": "sciflow"},
    )


def _sample(ns: argparse.Namespace) -> None:
    from sciflow.api import load_sampler

    sampler = load_sampler(ns.checkpoint, map_location=ns.device, use_ema=not ns.no_ema)
    size = {"num_samples": ns.num_samples}
    if ns.lengths:
        size = {"lengths": [int(n) for n in ns.lengths.split(",")]}
    if ns.compositions:
        size = {"compositions": [c.strip() for c in ns.compositions.split(",")]}
    if ns.property is not None:
        size["property"] = ns.property
    if ns.guidance_scale is not None:
        size["guidance_scale"] = ns.guidance_scale
    result = sampler.sample(
        **size,
        num_steps=ns.steps,
        solver=ns.solver,
        seed=ns.seed,
        progress=True,
    )
    written = result.write(Path(ns.out))
    print(f"wrote samples ({', '.join(result.samples)}) to {', '.join(map(str, written))}")


def _import_object(spec: str):
    """The object named by ``"module:attribute"``."""
    import importlib

    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"expected 'module:attribute', got {spec!r}")
    return getattr(importlib.import_module(module), name)


def _reflow(ns: argparse.Namespace) -> None:
    from sciflow.api import load_sampler
    from sciflow.reflow import generate_pairs

    sampler = load_sampler(ns.checkpoint, map_location=ns.device)
    requests = sampler.reflow_requests(ns.num_pairs, ns.batch_size, ns.seed)
    for request in requests:
        request["num_steps"] = ns.steps
    score = _import_object(ns.score) if ns.score else None
    pairs = generate_pairs(sampler, requests, score=score, keep_fraction=ns.keep_fraction)
    path = pairs.save(ns.out)
    print(f"kept {pairs.meta['kept']} of {pairs.meta['generated']} pairs; wrote {path}")


def _bench(ns: argparse.Namespace) -> None:
    from sciflow.evaluation.bench import run_benchmark

    for spec in ns.specs:
        path = run_benchmark(spec, out_dir=ns.out)
        print(f"{spec}: wrote {path} and {path.with_suffix('.md')}")


def _data(ns: argparse.Namespace) -> None:
    from sciflow.data import fetch, format_dataset_table, list_datasets
    from sciflow.registry import domain_info

    domain_info()  # importing plugins lets domains register their datasets
    if ns.data_command == "list":
        if list_datasets():
            print(format_dataset_table(ns.root))
        else:
            print("no datasets are registered yet: each domain registers its own as it lands")
    else:
        for name in ns.names:
            print(f"{name}: {fetch(name, root=ns.root, force=ns.force)}")


def _domains(ns: argparse.Namespace) -> None:
    from sciflow.registry import format_domain_table

    print(format_domain_table())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sciflow",
        description="Flow matching and Bayesian flow networks for scientific data. "
        f"Training: sciflow {{{','.join(LIGHTNING_COMMANDS)}}} --config CONFIG.yaml "
        "(see `sciflow fit --help`).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"LightningCLI {name} (sciflow {name} --help)", add_help=False)

    sample = sub.add_parser("sample", help="sample a trained checkpoint into OUT/samples.npz")
    sample.add_argument("--checkpoint", required=True, help="a checkpoint written by sciflow fit")
    sample.add_argument("--num-samples", type=int, default=64)
    sample.add_argument(
        "--steps", type=int, default=None, help="solver steps (default: the engine's own)"
    )
    sample.add_argument(
        "--solver",
        default=None,
        help="flow matching: euler (default), midpoint, heun, rk4, dopri5; "
        "Bayesian flows: vanilla (default), end_back",
    )
    sample.add_argument(
        "--lengths", default=None, help="protein: comma-separated chain lengths, one sample each"
    )
    sample.add_argument(
        "--compositions",
        default=None,
        help="crystal: comma-separated compositions with atom counts, e.g. 'Sr1 Ti1 O3,Na4 Cl4'",
    )
    sample.add_argument(
        "--property",
        type=float,
        default=None,
        help="crystal: target value of the property a conditioned model was trained on",
    )
    sample.add_argument(
        "--guidance-scale",
        type=float,
        default=None,
        help="classifier-free guidance scale w: (1 + w)·conditional − w·unconditional",
    )
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="cpu")
    sample.add_argument("--no-ema", action="store_true", help="use the raw, not the EMA, weights")
    sample.add_argument("--out", default="samples")
    sample.set_defaults(handler=_sample)

    reflow = sub.add_parser(
        "reflow",
        help="draw (noise, sample) pairs from a trained flow for rectified-flow fine-tuning",
        description="Draw pairs with the checkpoint's sampler, rank them by --score, keep the "
        "best --keep-fraction and write them to --out; then fine-tune with a config whose "
        "model sets init_from: CHECKPOINT and whose data is sciflow.reflow.ReflowDataModule.",
    )
    reflow.add_argument("--checkpoint", required=True, help="a checkpoint written by sciflow fit")
    reflow.add_argument("--out", required=True, help="the .npz file of pairs to write")
    reflow.add_argument("--num-pairs", type=int, default=1000)
    reflow.add_argument("--batch-size", type=int, default=32)
    reflow.add_argument("--steps", type=int, default=50, help="solver steps per sample")
    reflow.add_argument("--seed", type=int, default=0)
    reflow.add_argument(
        "--score", default=None, help="module:function scoring a batch's result, higher is better"
    )
    reflow.add_argument("--keep-fraction", type=float, default=1.0)
    reflow.add_argument("--device", default="cpu")
    reflow.set_defaults(handler=_reflow)

    bench = sub.add_parser("bench", help="run benchmark specs; write JSON + Markdown + plots")
    bench.add_argument("specs", nargs="+", help="benchmark spec YAML files")
    bench.add_argument("--out", default="benchmarks/results")
    bench.set_defaults(handler=_bench)

    data = sub.add_parser("data", help="list or download datasets (into SCIFLOW_DATA_DIR)")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    listing = data_sub.add_parser("list", help="registered datasets and whether they are present")
    fetch = data_sub.add_parser("fetch", help="download datasets and verify their checksums")
    fetch.add_argument("names", nargs="+")
    fetch.add_argument("--force", action="store_true", help="download even if present")
    for p in (listing, fetch):
        p.add_argument("--root", default=None, help="data folder (default: $SCIFLOW_DATA_DIR)")
    data.set_defaults(handler=_data)

    domains = sub.add_parser("domains", help="installed domain plugins and their status")
    domains.set_defaults(handler=_domains)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        _lightning_cli(argv)
        return
    ns = _parser().parse_args(argv)
    try:
        ns.handler(ns)
    except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError) as err:
        print(f"sciflow {ns.command}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from err


if __name__ == "__main__":
    main()
