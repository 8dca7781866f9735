"""Zoo builds: determinism, integrity check, rebuild on corruption or recipe change, atomic safetensors output.

These use shortened recipes (a few training steps) in temporary caches, so they run in seconds; the full zoo is
checked in test_accuracy.py.
"""

import json

import pytest

import compound as cp
from compound.zoo.cache import ensure_built, problem_with, read_manifest
from compound.zoo.recipes import RECIPES, recipe_hash

SHORT = {"tiny": RECIPES["tiny"].replace(steps=6, batch_size=8)}


def build(cache, recipes=SHORT):
    return ensure_built(["tiny"], cache, recipes=recipes, progress=False)["tiny"]


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a, b = build(tmp_path / "a"), build(tmp_path / "b")
    c = build(tmp_path / "c", {"tiny": SHORT["tiny"].replace(seed=1)})
    wa, wb, wc = (read_manifest(p)["weights_sha256"] for p in (a, b, c))
    assert wa == wb
    assert wa != wc
    files = sorted(p.name for p in a.iterdir())
    assert "model.safetensors" in files and not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
    assert {"config.json", "tokenizer.json", "manifest.json"} <= set(files)
    assert not [p for p in a.parent.iterdir() if p.name.startswith(".tiny-")]  # no temp folders left behind


def test_corrupt_weights_are_detected_and_rebuilt(tmp_path):
    folder = build(tmp_path)
    good = read_manifest(folder)["weights_sha256"]
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert "corrupt" in problem_with(folder, SHORT["tiny"])
    assert build(tmp_path) == folder
    assert problem_with(folder, SHORT["tiny"]) is None
    assert read_manifest(folder)["weights_sha256"] == good  # deterministic rebuild

    (folder / "model.safetensors").unlink()
    assert "missing" in problem_with(folder, SHORT["tiny"])
    (folder / "manifest.json").write_text("{not json")
    assert "unreadable" in problem_with(folder, SHORT["tiny"])
    build(tmp_path)
    assert problem_with(folder, SHORT["tiny"]) is None


def test_recipe_change_triggers_a_rebuild(tmp_path):
    folder = build(tmp_path)
    before = json.loads((folder / "manifest.json").read_text())
    changed = {"tiny": SHORT["tiny"].replace(lr=1e-3)}
    assert problem_with(folder, changed["tiny"]) == "the recipe changed"
    build(tmp_path, changed)
    after = read_manifest(folder)
    assert after["recipe_hash"] == recipe_hash(changed["tiny"]) != before["recipe_hash"]
    assert after["weights_sha256"] != before["weights_sha256"]


def short_family(tiny_lr=None):
    tiny = SHORT["tiny"] if tiny_lr is None else SHORT["tiny"].replace(lr=tiny_lr)
    return {"tiny": tiny, "small": RECIPES["small"].replace(steps=4, batch_size=8, grow_from=tiny)}


def test_a_grown_model_builds_its_base_first_and_is_the_same_whichever_way_it_is_built(tmp_path):
    family = short_family()
    together = ensure_built(["tiny", "small"], tmp_path / "a", recipes=family, progress=False)
    only_small = ensure_built(["small"], tmp_path / "b", recipes=family, progress=False)
    assert set(only_small) == {"small"} and problem_with(tmp_path / "b" / "zoo" / "tiny", family["tiny"]) is None
    assert read_manifest(only_small["small"])["params"] > read_manifest(together["tiny"])["params"]

    # the base already built and loaded from disk, not from memory: the grown weights are the same
    (tmp_path / "b" / "zoo" / "small" / "manifest.json").unlink()
    rebuilt = ensure_built(["small"], tmp_path / "b", recipes=family, progress=False)["small"]
    sha = {read_manifest(p)["weights_sha256"] for p in (together["small"], only_small["small"], rebuilt)}
    assert len(sha) == 1

    # a change to the base's recipe changes the grown model's recipe, so both are rebuilt
    changed = short_family(tiny_lr=1e-3)
    assert problem_with(together["small"], changed["small"]) == "the recipe changed"
    ensure_built(["small"], tmp_path / "a", recipes=changed, progress=False)
    assert read_manifest(together["small"])["weights_sha256"] not in sha
    assert read_manifest(together["tiny"])["recipe_hash"] == recipe_hash(changed["tiny"])


def test_cache_location_follows_argument_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPOUND_CACHE", str(tmp_path / "env"))
    assert cp.zoo.cache_root() == tmp_path / "env" / "zoo"
    assert cp.zoo.cache_root(tmp_path / "arg") == tmp_path / "arg" / "zoo"
    monkeypatch.delenv("COMPOUND_CACHE")
    assert cp.zoo.cache_root().parts[-3:] == (".cache", "compound", "zoo")


def test_unknown_model_names_say_what_exists(tmp_path):
    with pytest.raises(ValueError, match="choose one of"):
        cp.zoo.path("huge", tmp_path)
    with pytest.raises(ValueError, match="choose one of"):
        cp.zoo.build(["tiny", "medium"], tmp_path)


def test_encoder_is_the_shipped_minilm_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = cp.zoo.encoder()
    vecs = enc.encode(["I was charged twice", "my card was billed two times", "the app crashes"],
                      normalize_embeddings=True)
    assert vecs.shape == (3, 384)
    assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2])  # paraphrases are closer than unrelated text
