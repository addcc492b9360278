"""``python -m playground.train``: train a model from flags (every ModelConfig and TrainConfig field is
one), continue one with ``--resume``, or rebuild the zoo with ``--zoo [NAME ...]``."""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys

import torch

from playground.config import ModelConfig
from playground.train.loop import TrainConfig, print_progress, train
from playground.zoo.build import train_zoo


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            parser.add_argument(flag, type=lambda s: s.lower() in ("1", "true", "yes"), default=None,
                                metavar="BOOL", help=f"default {f.default}")
        else:
            parser.add_argument(flag, type=type(f.default), default=None, help=f"default {f.default}")


def _from_flags(cls, args: argparse.Namespace, base: dict | None = None):
    values = dict(base or {})
    for f in dataclasses.fields(cls):
        if getattr(args, f.name, None) is not None:
            values[f.name] = getattr(args, f.name)
    return cls(**values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m playground.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="output folder")
    parser.add_argument("--config", help="a model config.json to start from")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    parser.add_argument("--zoo", nargs="*", metavar="NAME", help="(re)build the zoo, or the named entries")
    parser.add_argument("--force", action="store_true", help="with --zoo: retrain finished entries")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    _add_dataclass_flags(parser, ModelConfig)
    _add_dataclass_flags(parser, TrainConfig)
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "python -m playground.train " + " ".join(shlex.quote(a) for a in argv if a != "--resume")
    try:
        if args.zoo is not None:
            train_zoo(args.zoo, force=args.force, device=args.device)
            return
        if not args.out:
            parser.error("--out is required (or use --zoo)")
        base = ModelConfig.load(args.config).to_dict() if args.config else {}
        mcfg, tcfg = _from_flags(ModelConfig, args, base), _from_flags(TrainConfig, args)
        out = train(mcfg, tcfg, args.out, resume=args.resume, command=command, on_step=print_progress,
                    device=args.device)
        card = json.loads((out / "card.json").read_text())
        print(f"\nsaved {out}: val bits/char {card.get('val_bits_per_char')} (4x: {card.get('val_bits_per_char_4x')})"
              if "val_bits_per_char" in card else f"\nsaved {out}: {card.get('val')}")
    except KeyboardInterrupt:
        print(f"\nstopped; checkpoint saved. Continue with: {command} --resume")
        sys.exit(130)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
