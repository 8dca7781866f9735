"""`cp.adapters`: PEFT's folder format plus a manifest, atomic writes, integrity and base checks, no pickle."""

import copy
import json
import pickle

import pytest
import torch
from peft import LoraConfig, PeftModel

import compound as cp
from compound import adapters

LORA = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")


@pytest.fixture(scope="module")
def lora(random_base, peft_adapter):
    base, _ = random_base
    model, config, tensors = peft_adapter(base, LORA, seed=7)
    return model, config, tensors


def info_for(lm, **extra):
    loaded = adapters.loaded_model_of(lm)
    return {"base": {"name": loaded.name, "model_id": loaded.model_id, "fingerprint": loaded.fingerprint,
                     "revision": None, "lm_kwargs": {"max_tokens": 12}}, "method": "lora", **extra}


def greedy_text(model, tok, prompt: str, n: int = 12) -> str:
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        for _ in range(n):
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1:].argmax(-1)], 1)
    return tok.decode(ids[0, -n:], skip_special_tokens=True)


def test_round_trip_list_load_export_delete(random_base, random_lm, lora, tmp_path, adapter_registry):
    base, tok = random_base
    peft_model, config, tensors = lora
    folder = adapters.save("rev-v1", config, tensors, info_for(random_lm, dev={"score": 0.5}))
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                        "compound.json"]
    table = cp.adapters.list()
    assert [(r["name"], r["method"], r["dev_score"]) for r in table.rows] == [("rev-v1", "lora", 0.5)]
    assert "rev-v1" in repr(table) and "<table" in table._repr_html_()
    manifest = cp.adapters.manifest("rev-v1")
    assert manifest["sizes"]["params"] == sum(t.numel() for t in tensors.values())
    assert set(manifest["files"]) == {"adapter_config.json", "adapter_model.safetensors"}

    lm = cp.adapters.load("rev-v1", lm=random_lm)
    assert lm.model == f"{random_lm.model}@rev-v1"
    assert lm.kwargs["metadata"]["compound_weights"].startswith(random_lm.kwargs["metadata"]["compound_weights"] + "+")
    prompt = "the quick brown fox"
    served = cp.lm.engine_of(lm).generate(prompt).text  # through the engine's HF-free raw path
    assert served  # the real check is below: the exported folder loads in PEFT and agrees with the engine

    exported = cp.adapters.export("rev-v1", tmp_path / "exported")
    reloaded = PeftModel.from_pretrained(copy.deepcopy(base), exported).eval()
    from compound.lm import SamplingParams

    engine = cp.lm.engine_of(lm)
    text = engine.submit(tok(prompt)["input_ids"], SamplingParams(max_tokens=12), "rev-v1").future.result().text
    assert text == greedy_text(reloaded, tok, prompt) == greedy_text(peft_model, tok, prompt)
    assert text != greedy_text(base, tok, prompt)

    cp.adapters.delete("rev-v1")
    assert cp.adapters.list().rows == []
    with pytest.raises(FileNotFoundError, match="no adapter 'rev-v1'"):
        cp.adapters.load("rev-v1", lm=random_lm)
    assert not any(p.name.startswith(".") for p in adapter_registry.iterdir())


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "remove"])
def test_a_corrupt_file_is_refused_naming_the_fix(random_lm, lora, adapter_registry, damage):
    _, config, tensors = lora
    folder = adapters.save("rev-v1", config, tensors, info_for(random_lm))
    weights = folder / "adapter_model.safetensors"
    data = weights.read_bytes()
    if damage == "flip a byte":
        weights.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    elif damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    else:
        weights.unlink()
    with pytest.raises(ValueError, match=r"adapter 'rev-v1' is corrupt: adapter_model.safetensors .*cp.adapters.delete"):
        cp.adapters.load("rev-v1", lm=random_lm)


def test_the_wrong_base_is_refused_naming_both(random_lm, lora, small):
    _, config, tensors = lora
    adapters.save("rev-v1", config, tensors, info_for(random_lm))
    with pytest.raises(ValueError) as err:
        cp.adapters.load("rev-v1", lm=small)
    message = str(err.value)
    base = adapters.loaded_model_of(random_lm)
    assert base.name in message and "zoo-small" in message and base.fingerprint in message


def test_a_failed_save_leaves_the_previous_version_and_no_partial_folder(random_lm, lora, adapter_registry,
                                                                         monkeypatch):
    _, config, tensors = lora
    adapters.save("rev-v1", config, tensors, info_for(random_lm, dev={"score": 0.1}))

    def write_then_fail(folder, *args, **kwargs):
        (folder / "adapter_model.safetensors").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(adapters, "write_peft_folder", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        adapters.save("rev-v1", config, tensors, info_for(random_lm, dev={"score": 0.9}))
    monkeypatch.undo()
    monkeypatch.setenv("COMPOUND_ADAPTERS", str(adapter_registry))
    assert cp.adapters.manifest("rev-v1")["dev"]["score"] == 0.1
    assert adapters.read("rev-v1")[1].keys() == tensors.keys()
    assert [p.name for p in adapter_registry.iterdir()] == ["rev-v1"]


def test_loading_never_unpickles(random_lm, lora, monkeypatch):
    _, config, tensors = lora
    adapters.save("rev-v1", config, tensors, info_for(random_lm))

    def refuse(*args, **kwargs):
        raise AssertionError("pickle must never be loaded")

    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    assert cp.adapters.load("rev-v1", lm=random_lm).model.endswith("@rev-v1")


def test_names_are_checked(random_lm, lora):
    _, config, tensors = lora
    for bad in ["../escape", "a/b", "with space", "x@y", ""]:
        with pytest.raises(ValueError, match="adapter name"):
            adapters.save(bad, config, tensors, info_for(random_lm))


def test_load_without_lm_loads_the_recorded_base(random_lm, lora):
    _, config, tensors = lora
    adapters.save("rev-v1", config, tensors, info_for(random_lm))
    lm = cp.adapters.load("rev-v1")  # the base is in memory in this process: reused, same engine
    assert adapters.loaded_model_of(lm) is adapters.loaded_model_of(random_lm)
    assert lm.kwargs["max_tokens"] == 12
    assert json.loads((adapters.path("rev-v1") / "adapter_config.json").read_text())["peft_type"] == "LORA"
