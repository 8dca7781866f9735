"""Run by test_finetune.py in a subprocess that gets killed mid-training: prints each step, checkpoints every step."""

import sys


def main(name: str, tests_dir: str) -> None:
    import compound as cp
    from compound.testing import tiny_llama

    sys.path.insert(0, tests_dir)
    from conftest import chat_rows

    model, tok = tiny_llama(0)
    lm = cp.LM(model, tokenizer=tok, name="tune-crash", cache=False)
    job = cp.finetune(lm, chat_rows(), name=name, max_steps=10_000, batch_size=8, checkpoint_every=1, display=False)
    job.watch(lambda _: print("step", job.step, flush=True))
    job.result()


if __name__ == "__main__":  # pytest's --doctest-modules imports this file too: only a run trains
    main(sys.argv[1], sys.argv[2])
