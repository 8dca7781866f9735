"""`compound demo` end to end in its short mode, on the zoo built in the configured cache (shared with the notebook)."""

import re
import subprocess
import sys

import pytest

import compound as cp


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "compound.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def zoo():
    return cp.zoo.build()  # a no-op hash check once built


@pytest.mark.slow
def test_demo_quick_prints_a_table_per_module_and_engine_batching(zoo):
    out = run_cli("demo", "--quick")
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    print(text)
    rows = {m.group(1): m for m in re.finditer(
        r"^(triage|extract)\s+(local/zoo-\w+)\s+([\d.]+)%\s+(\d+)\s+(\d+)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+) ms$", text, re.M)}
    assert rows["triage"].group(2) == "local/zoo-tiny" and rows["extract"].group(2) == "local/zoo-small"
    for row in rows.values():
        assert int(row.group(4)) == 24  # one call per ticket
        assert int(row.group(6).replace(",", "")) > 24 * 10  # prompt tokens counted by the engine
    assert float(rows["triage"].group(3)) >= 50.0  # the easy module works on held-out tickets
    assert re.search(r"^pipeline\s+[\d.]+%", text, re.M)
    batching = re.findall(r"local/zoo-(tiny|small)\s+(\d+) requests, \d+ decode steps, mean batch ([\d.]+) \(max (\d+)\)",
                          text)
    assert {b[0] for b in batching} == {"tiny", "small"}
    assert all(int(b[1]) >= 24 for b in batching)
    assert max(int(b[3]) for b in batching) > 1  # 8 Evaluate threads were batched together


@pytest.mark.slow
def test_demo_runs_the_same_pipeline_on_a_model_folder(zoo):
    out = run_cli("demo", "--quick", "--n", "8", "--model", str(zoo["small"]))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "[CompactAdapter]" in out.stdout  # a zoo folder keeps the adapter it was trained on
    assert len(re.findall(r"local/small\s", out.stdout)) >= 2  # both modules on the given model


def test_demo_with_a_missing_folder_says_what_to_do(tmp_path):
    out = run_cli("demo", "--model", str(tmp_path / "nope"))
    assert out.returncode == 2
    assert "no model folder" in out.stderr and "hub id" in out.stderr


def test_console_entry_point_is_declared():
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "compound"]
    assert script.value == "compound.cli:main"


@pytest.mark.slow
def test_zoo_command_states_each_models_size_and_context(zoo):
    out = run_cli("zoo")
    assert out.returncode == 0, out.stderr[-3000:]
    for name in ("tiny", "small"):
        assert re.search(rf"^  {name}\s+[\d,]+ params  context 1,024 tokens  weights sha256 [0-9a-f]{{16}}", out.stdout, re.M), \
            out.stdout
