"""bench/_runner.py, shared by the benchmark scripts: each script loads with it, none keeps
its own copy of the runner, and the shared helpers compute what the scripts report."""
import ast
import importlib
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SHARED = {"suspendos_cmd", "med", "loadavg", "ours", "suspend", "resume", "per_rep_ratio"}
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem != "_runner")


@pytest.fixture(scope="module")
def runner():
    sys.path.insert(0, str(BENCH))
    yield importlib.import_module("_runner")
    sys.path.remove(str(BENCH))


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_loads_and_keeps_no_copy_of_the_runner(runner, script):
    tree = ast.parse((BENCH / f"{script}.py").read_text())
    own = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert not own & SHARED, f"{script} defines {own & SHARED} itself"
    importlib.import_module(script)


def test_rotated_order_ratios_and_medians(runner):
    seen = []

    def unit(name, value):
        def run(rep):
            seen.append((rep, name))
            return [(name, {"ok": True, "t": value * rep})]
        return run
    runs = runner.rotated([unit("a", 1.0), unit("b", 2.0)], 3, "test")
    assert seen == [(1, "a"), (1, "b"), (2, "b"), (2, "a"), (3, "a"), (3, "b")]
    assert all(len(r["load_before"]) == 3 for r in runs)
    assert runner.per_rep_ratio(runs, 3, "b", "t", "a", "t") == [2.0, 2.0, 2.0]
    assert runner.med(runner.column(runs, "a", "t")) == 2.0
    assert runner.med([None, 1, 3]) == 2.0
    assert set(runner.load_summary(runs)) == {"load1_median", "load5_median", "load15_median",
                                              "load1_range"}


def test_results_go_inside_the_repository(runner, tmp_path):
    assert runner.results_path("bench/e2e_vs_swsusp.py") == BENCH / "results" / "e2e_vs_swsusp.json"
    assert runner.results_path("x.py", tmp_path / "r.json") == tmp_path / "r.json"
