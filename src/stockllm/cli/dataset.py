"""``stockllm build``: chat-format fine-tuning sets (train / validation / test JSONL)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_codes_arg, add_data_args, add_dataset_args, info, output_folder, positive_int, print_json


def register(sub: argparse._SubParsersAction) -> None:
    build = sub.add_parser("build", help="build the fine-tuning dataset (four windows, field sets, optional news context)")
    add_data_args(build, only=["data_dir", "company_list_file"])
    add_codes_arg(build)
    add_dataset_args(build)
    build.add_argument("--max-seq-length", type=positive_int, default=2048, help="longest example (prompt + answer) in tokens; longer windows are skipped and counted (default: 2048)")
    build.add_argument("--out", type=output_folder, default="outputs/dataset", help="output folder for train/validation/test JSONL and metadata.json (default: outputs/dataset)")
    build.add_argument("--json", action="store_true", help="print the metadata as JSON on stdout")
    build.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    from ..dataset import build_dataset, check_out_dir, spec_from_args, write_dataset
    from ..universe import select_companies

    check_out_dir(Path(args.out))  # before the build, not after it
    spec = spec_from_args(args)
    companies = select_companies(args.company_list_file, args.codes, args.data_dir)
    info(f"building {spec.fields} examples, windows {','.join(f'{p}:{f}' for p, f in spec.windows)}, context {spec.context}, for {len(companies)} companies from {args.data_dir}")
    built = build_dataset(Path(args.data_dir), companies, spec)
    paths = write_dataset(built, Path(args.out))
    meta = built.metadata
    for skipped in built.skipped:
        info(f"skipped {skipped['code']} {skipped['name']}: {skipped['reason']}")
    for note in meta["notes"]:
        info(f"note: {note}")
    starts = meta["split_starts"]
    info(f"splits: validation from {starts['validation']}, test from {starts['test']}, {starts['gap_rows']} trading days of gap between them")
    info(built.summary())
    info(f"wrote {', '.join(str(p) for p in paths.values())}")
    if args.json:
        print_json(meta)
    return 0
