"""Benchmark: how long a built zoo takes to load, against a bare transformers load of the same folders.

Each run is a fresh Python process (what a notebook kernel or `compound demo` pays): it imports the libraries, then
loads both zoo models twice, once with `cp.zoo.lm` (manifest and sha256 check of every file, weights, tokenizer,
engine ready to serve) and once with `AutoModelForCausalLM/AutoTokenizer.from_pretrained` alone, in alternating order
across runs so neither always finds the files in the page cache first. Figures are medians over the runs.

    python bench/zoo.py --quick      # 2 fresh processes, < 1 minute once the zoo is built; last line is the headline
    python bench/zoo.py --runs 6     # more runs, steadier medians on a busy machine
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

# One fresh process: import time, then both loads in the given order. Prints one JSON line.
_RUN = r"""
import json, sys, time
t0 = time.perf_counter()
import dspy, torch, transformers
import compound as cp, compound.lm, compound.zoo.adapter
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast  # lazy modules
from compound.quiet import quiet_transformers
imports = time.perf_counter() - t0
folders = {name: cp.zoo.path(name, progress=False) for name in cp.zoo.MODELS}

def bare():
    with quiet_transformers():
        return [(AutoModelForCausalLM.from_pretrained(f), AutoTokenizer.from_pretrained(f)) for f in folders.values()]

def zoo():
    return [cp.zoo.lm(name) for name in folders]

seconds = {}
for which in sys.argv[1].split(","):
    t = time.perf_counter()
    {"bare": bare, "zoo": zoo}[which]()
    seconds[which] = time.perf_counter() - t
print(json.dumps({"imports": imports, **seconds}))
"""


def one_run(order: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", _RUN, order], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join([_ROOT, *sys.path])})
    if out.returncode != 0:
        raise SystemExit(f"a benchmark run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 fresh processes (one per order)")
    ap.add_argument("--runs", type=int, default=None, help="fresh processes to time (default 2 quick, 6 otherwise)")
    args = ap.parse_args(argv)
    runs = args.runs or (2 if args.quick else 6)

    sys.path.insert(0, _ROOT)
    import compound as cp

    cp.zoo.build()  # builds once on a fresh machine (minutes); the timed runs only load
    results = [one_run("zoo,bare" if i % 2 == 0 else "bare,zoo") for i in range(runs)]
    for r in results:
        print(json.dumps({k: round(v, 3) for k, v in r.items()}), flush=True)
    median = {k: statistics.median(r[k] for r in results) for k in ("imports", "zoo", "bare")}
    print(f"fresh process: imports {median['imports']:.2f} s (torch, transformers, dspy, compound)")
    print(f"bare from_pretrained of both folders: {median['bare']:.2f} s")
    print(f"zoo load of tiny + small (hash check, weights, engine): {median['zoo']:.2f} s "
          f"= {median['zoo'] / median['bare']:.1f}x the bare load ({runs} runs, medians)")


if __name__ == "__main__":
    main()
