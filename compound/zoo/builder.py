"""Build zoo models from their recipes: render the suite, train the tokenizer, pretrain, save. One progress bar."""

from __future__ import annotations

import time
from pathlib import Path

from compound.zoo.cache import save_atomically
from compound.zoo.recipes import ZooRecipe
from compound.zoo.tokenizer import train_tokenizer
from compound.zoo.train import corpus_messages, encode, pretrain, tokenizer_texts, training_threads


def build_models(recipes: list[ZooRecipe], folders: dict[str, Path], progress: bool = True) -> dict[str, dict]:
    """Train every recipe (in order: a grown model after its base) and write it to `folders[recipe.name]`.

    Returns the manifests. A base that is not being rebuilt is loaded from `folders[base.name]`. Recipes sharing a
    vocabulary size share one tokenizer (trained once). Progress is a tqdm bar over all training steps of all models
    (`tqdm.auto`, so a notebook shows a widget bar and a terminal a text bar).
    """
    import torch
    import transformers
    from tqdm.auto import tqdm

    start = time.perf_counter()
    messages = corpus_messages("train")
    tokenizers, encoded = {}, {}
    for vocab_size in sorted({r.vocab_size for r in recipes}):
        tokenizers[vocab_size] = train_tokenizer(tokenizer_texts(messages), vocab_size)
        encoded[vocab_size] = encode(tokenizers[vocab_size], messages)
    prep_seconds = time.perf_counter() - start

    manifests, trained = {}, {}
    total = sum(r.steps for r in recipes)
    with tqdm(total=total, desc="building zoo", unit="step", disable=not progress) as bar:
        for recipe in recipes:
            bar.set_postfix_str(recipe.name)
            t0 = time.perf_counter()
            tokenizer = tokenizers[recipe.vocab_size]
            base = None
            if recipe.grow_from is not None:
                base = trained.get(recipe.grow_from.name)
                if base is None:
                    base = _load_base(folders[recipe.grow_from.name], tokenizer)
            model = trained[recipe.name] = pretrain(
                recipe, tokenizer, encoded[recipe.vocab_size], progress=bar.update, grow=base
            )
            manifests[recipe.name] = save_atomically(
                folders[recipe.name], model, tokenizer, recipe,
                {
                    "context_length": model.config.max_position_embeddings,
                    "train_seconds": round(time.perf_counter() - t0, 2),
                    "prepare_seconds": round(prep_seconds, 2),
                    "threads": training_threads(),
                    "torch": torch.__version__,
                    "transformers": transformers.__version__,
                },
            )
    return manifests


def _load_base(folder: Path, tokenizer):
    """A base model from its (already verified) folder; it must share the tokenizer that is being trained against."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compound.zoo.cache import quiet_transformers

    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(folder, use_safetensors=True)
        if AutoTokenizer.from_pretrained(folder).get_vocab() != tokenizer.get_vocab():
            raise RuntimeError(f"the zoo model in {folder} has another tokenizer; rebuild it: cp.zoo.build(force=True)")
    return model
