"""The `compound` command line.

    compound demo                     build or load the offline zoo, evaluate the support-desk pipeline, print costs
    compound demo --quick             the same on 24 tickets (what the tests run)
    compound demo --model ORG/NAME    both modules on a hub model (or a local folder) instead of the zoo
    compound zoo                      build or verify the zoo and print its models (parameters, context, folder)
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def _demo(args: argparse.Namespace) -> int:
    import dspy

    from compound.zoo.demo import run_demo

    dspy.disable_logging()  # DSPy's INFO lines would interleave with the table
    if args.model is None:
        import compound.zoo as zoo

        start = time.perf_counter()
        folders = zoo.build(cache_dir=args.cache_dir)
        print(f"zoo ready in {time.perf_counter() - start:.1f} s: "
              + ", ".join(f"{n} ({zoo.manifest(n, args.cache_dir)['params']:,} params)" for n in folders)
              + f", {zoo.CONTEXT_LENGTH:,}-token context, in {zoo.cache_root(args.cache_dir)}", flush=True)
    report = run_demo(args.model, n=args.n or (24 if args.quick else None), num_threads=args.threads,
                      cache_dir=args.cache_dir, adapter=args.adapter, display_progress=not args.quick)
    print(report)
    return 0


def _zoo(args: argparse.Namespace) -> int:
    import compound.zoo as zoo

    start = time.perf_counter()
    folders = zoo.build(cache_dir=args.cache_dir, force=args.rebuild)
    print(f"zoo ready in {time.perf_counter() - start:.1f} s")
    for name, folder in folders.items():
        m = zoo.manifest(name, args.cache_dir)
        print(f"  {name:6} {m['params']:>11,} params  context {m['context_length']:,} tokens  "
              f"weights sha256 {m['weights_sha256'][:16]}  trained in {m['train_seconds']} s on {m['threads']} threads"
              f"  {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="compound", description="DSPy pipelines of small models, served in-process.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="evaluate a 2-module DSPy pipeline on the offline zoo and print its costs")
    demo.add_argument("--model", default=None,
                      help="hub id or local folder to run both modules on instead of the zoo (uses ChatAdapter)")
    demo.add_argument("--quick", action="store_true", help="24 tickets instead of 200 (for tests and smoke runs)")
    demo.add_argument("--n", type=int, default=None, help="number of held-out tickets to evaluate")
    demo.add_argument("--threads", type=int, default=8, help="dspy.Evaluate threads (default 8)")
    demo.add_argument("--adapter", choices=("auto", "compact", "chat"), default="auto",
                      help="auto: CompactAdapter for zoo models, ChatAdapter for hub models")
    demo.add_argument("--cache-dir", default=None, help="zoo cache root (default $COMPOUND_CACHE or ~/.cache/compound)")
    demo.set_defaults(func=_demo)

    zoo = sub.add_parser("zoo", help="build or verify the offline zoo models")
    zoo.add_argument("--rebuild", action="store_true", help="rebuild even if the cache is sound")
    zoo.add_argument("--cache-dir", default=None, help="zoo cache root (default $COMPOUND_CACHE or ~/.cache/compound)")
    zoo.set_defaults(func=_zoo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "model", None) and not os.path.isdir(args.model) and args.model.startswith((".", "/", "~")):
        print(f"compound: no model folder at {args.model!r}; give an existing folder or a hub id like 'org/name'",
              file=sys.stderr)
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
