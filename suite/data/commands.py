"""`suite data synth` (write the generated long-tailed set in LVIS v1 format), `suite data check`
and `suite data stats` (a set's long-tail statistics beside LVIS v1's)."""

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from suite.data.layout import SyntheticLayout
from suite.data.synth import (LVIS_PROFILE_CLASSES, LVIS_PROFILE_IMAGE_SIZE, LVIS_PROFILE_MIN_VAL_IMAGES,
                              LVIS_PROFILE_VAL_IMAGES, SynthSpec, frequency_thresholds, generate, lvis_profile_spec)

DEFAULTS = SynthSpec()


def register(subparsers) -> None:
    data = subparsers.add_parser("data", help="generate, check and describe data sets",
                                 description="Generate data sets in LVIS v1 format, check them, and set their "
                                 "statistics beside LVIS v1's.")
    data.set_defaults(func=lambda args: data.print_help() or 2)
    commands = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    synth = commands.add_parser(
        "synth", help="write a long-tailed synthetic set in LVIS v1 format",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write a long-tailed instance segmentation set in LVIS v1 format: look-alike "
        "families of textured shapes, classes split into rare/common/frequent groups in LVIS v1's "
        "proportions, polygon masks. Same arguments, same bytes.",
        epilog="Writes:\n"
        "  DIR/annotations/lvis_v1_train.json, DIR/annotations/lvis_v1_val.json\n"
        "  DIR/images/train/*.png, DIR/images/val/*.png (each image's coco_url: train/<file>)\n"
        "Frequency groups: LVIS's rule (rare 1-10, common 11-100, frequent > 100 training images)\n"
        "from 400 training images up; below, common_max = N // 4 and rare_max = common_max // 10.\n"
        "Use it: suite train --dataset DIR ...")
    synth.add_argument("--out", required=True, type=Path, metavar="DIR",
                       help="folder to create (must not exist, or be empty)")
    synth.add_argument("--profile", choices=("default", "lvis"), default="default",
                       help="default: a geometric tail inside each frequency group (the study's set); lvis: "
                       "per-class image counts from LVIS v1's quantiles (baselines/lvis_v1_image_counts.json) and "
                       "training images for LVIS v1's classes per image (docs/data-stats.md)")
    synth.add_argument("--images", type=int, metavar="N",
                       help=f"training images (default {DEFAULTS.num_train_images}; lvis: derived, not settable)")
    synth.add_argument("--val-images", type=int, metavar="M",
                       help=f"validation images (default {DEFAULTS.num_val_images}; lvis {LVIS_PROFILE_VAL_IMAGES}, "
                       f"every class in at least {LVIS_PROFILE_MIN_VAL_IMAGES})")
    synth.add_argument("--classes", type=int, metavar="K",
                       help=f"categories, 3-64 (default {DEFAULTS.num_classes}; lvis {LVIS_PROFILE_CLASSES})")
    synth.add_argument("--size", type=int, metavar="PX",
                       help=f"image side in pixels (default {DEFAULTS.image_size}; lvis {LVIS_PROFILE_IMAGE_SIZE})")
    synth.add_argument("--seed", type=int, default=DEFAULTS.seed, metavar="S",
                       help="random seed (default %(default)s)")
    synth.set_defaults(func=run_synth)
    check = commands.add_parser(
        "check", help="check a data set's annotations and images, as suite train does first",
        description="Check both splits of a data set the way 'suite train' does before it writes anything: "
        "annotations present, boxes of positive size inside their image (1 pixel of slack), every image "
        "present, readable (header only) and of the size its JSON gives. Images that passed are cached "
        "(keyed by the JSON's hash, each image's size and time), so a second check reads none again.")
    check.add_argument("--dataset", required=True,
                       help="lvis_v1 (under $DETECTRON2_DATASETS) or the folder of a set written by 'suite data synth'")
    check.set_defaults(func=run_check)
    stats = commands.add_parser(
        "stats", help="a data set's long-tail statistics beside LVIS v1's",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Statistics of a data set's training split (classes, images, instances per image, "
        "frequency groups, per-class image-count range and ratio, the pressure on rare classes) beside "
        "LVIS v1's, computed now from the running Detectron2's LVIS metadata (where it has no per-class image "
        "counts, as v0.6, those statistics come from baselines/lvis_v1_image_counts.json: suite data lvis-baseline).",
        epilog="pressure on a class: the sum over all classes of their training image counts / that class's\n"
        "image count (the rarest class; the median rare class). A class's image count: training images\n"
        "holding at least one of its instances. n/a: the source does not give it (Detectron2's metadata has\n"
        "no image or instance numbers).")
    stats.add_argument("datasets", nargs="+", metavar="DATASET",
                       help="the folder of a set written by 'suite data synth', or lvis_v1 (its annotations under "
                       "$DETECTRON2_DATASETS); several: one column each")
    stats.add_argument("--json", action="store_true",
                       help="print the record (JSON, kind dataset_stats) instead of the table")
    stats.set_defaults(func=run_stats)
    baseline = commands.add_parser(
        "lvis-baseline", help="derive LVIS v1's per-class image-count baseline from Detectron2's metadata",
        description="Read LVIS v1's per-class training image counts and frequency groups from the running "
        "Detectron2's metadata (later versions than v0.6 have the counts: run it with a source tree of Detectron2's "
        "main branch on PYTHONPATH) and write the baseline that 'suite data stats' falls back to and 'suite data "
        "synth --profile lvis' is shaped by: per-group quantiles of the image counts and the statistics, with "
        "provenance (this command, Detectron2's version, the metadata files' sha256, the date).")
    baseline.add_argument("--out", type=Path, default=None, metavar="FILE",
                          help="where to write it (default: the committed baselines/lvis_v1_image_counts.json)")
    baseline.add_argument("--check", action="store_true",
                          help="write nothing; exit 1 if the committed baseline differs from what is derived now")
    baseline.set_defaults(func=run_lvis_baseline)


def synth_spec(args: argparse.Namespace) -> SynthSpec:
    """The spec `suite data synth` was asked for; ValueError for --images with the LVIS profile."""
    given = {field: value for field, value in (("num_val_images", args.val_images), ("num_classes", args.classes),
                                               ("image_size", args.size)) if value is not None}
    if args.profile == "lvis":
        if args.images is not None:
            raise ValueError("--images: the LVIS profile derives its training images from its classes' image counts "
                             "and LVIS v1's classes per image; set --classes instead")
        return lvis_profile_spec(seed=args.seed, **given)
    return replace(DEFAULTS, seed=args.seed, **given,
                   **({} if args.images is None else {"num_train_images": args.images}))


def run_synth(args: argparse.Namespace) -> int:
    spec = synth_spec(args)
    start = time.perf_counter()
    summary = generate(spec, args.out)
    groups = summary["groups"]
    rare_max, common_max = frequency_thresholds(spec.num_train_images)
    print(f"wrote {SyntheticLayout(args.out).split('train').json_file.parent}/lvis_v1_{{train,val}}.json "
          f"and {summary['num_train_images']} + {summary['num_val_images']} images: "
          f"{summary['num_classes']} classes (rare {groups['r']}, common {groups['c']}, frequent "
          f"{groups['f']}; rare <= {rare_max} < common <= {common_max} < frequent training images), "
          f"{summary['train_instances']} + {summary['val_instances']} instances, "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from suite.data.register import register_dataset

    start = time.perf_counter()
    dataset = register_dataset(args.dataset, check_files=True)
    print(f"{dataset.path}: {dataset.num_train_images} training images and the validation split checked "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def stats_record(datasets) -> dict:
    """The `dataset_stats` record (docs/records.md): each set's statistics, then LVIS v1's from
    Detectron2's metadata."""
    from suite.data.lvis_reference import lvis_v1_metadata_statistics
    from suite.data.stats import dataset_statistics
    from suite.schema import DATASET_STATS_KIND, SCHEMA_VERSION

    return {"schema_version": SCHEMA_VERSION, "kind": DATASET_STATS_KIND,
            "datasets": [*({"name": dataset, **dataset_statistics(dataset)} for dataset in datasets),
                         {"name": "lvis_v1 (Detectron2 metadata)", **lvis_v1_metadata_statistics()}]}


def run_lvis_baseline(args: argparse.Namespace) -> int:
    from suite.data.lvis_reference import BASELINE_FILE, derive_baseline, load_baseline, same_baseline
    from suite.records import write_json_atomic

    derived = derive_baseline()
    out = args.out or BASELINE_FILE
    if args.check:
        same = same_baseline(load_baseline(out), derived)
        print(f"{out}: {'the same as' if same else 'DIFFERS from'} what {derived['provenance']['command']} derives now")
        return 0 if same else 1
    write_json_atomic(out, derived)
    statistics = derived["statistics"]
    print(f"wrote {out}: {statistics['num_classes']} classes, image counts {statistics['image_count_min']}-"
          f"{statistics['image_count_max']} (sum {statistics['image_count_sum']}), from Detectron2 "
          f"{derived['provenance']['detectron2_version']}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    from suite.data.stats import format_table

    record = stats_record(args.datasets)
    if args.json:
        print(json.dumps(record, indent=1, sort_keys=True, allow_nan=False))
        return 0
    columns = record["datasets"]
    print(format_table([column["name"] for column in columns], columns))
    for column in columns:
        print(f"{column['name']}: {column['source']}")
    return 0
