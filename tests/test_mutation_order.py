"""The order benchmarks/mutation.sh runs the tests in (tests/conftest.py): the likeliest killers first."""

from __future__ import annotations

import json
from types import SimpleNamespace

from .conftest import KILLERS, TEST_SECONDS, _mutation_order


def test_a_mutants_tests_start_with_those_that_caught_its_neighbours(tmp_path):
    (tmp_path / KILLERS).write_text(
        "pkg.loop.x_fit__mutmut_1\ttests/a.py::fit_killer\n"
        "pkg.loop.xǁSessionǁtrain__mutmut_3\ttests/b.py::module_killer\n"
        "pkg.data.x_load__mutmut_2\ttests/c.py::other_module\n"
    )
    (tmp_path / TEST_SECONDS).write_text(json.dumps({"tests/a.py::fit_killer": 9.0, "tests/d.py::quick": 0.1}))
    names = ["tests/d.py::quick", "tests/c.py::other_module", "tests/b.py::module_killer", "tests/a.py::fit_killer"]
    items = [SimpleNamespace(nodeid=name) for name in names]
    items.sort(key=_mutation_order(tmp_path, "pkg.loop.x_fit__mutmut_7"))
    assert [i.nodeid for i in items] == [
        "tests/a.py::fit_killer",  # caught another mutant of x_fit: first, however slow
        "tests/b.py::module_killer",  # caught one of the same module
        "tests/c.py::other_module",  # then by time: unknown counts as 0 s
        "tests/d.py::quick",
    ]


def test_without_the_files_the_order_is_kept(tmp_path):
    items = [SimpleNamespace(nodeid=f"tests/t.py::t{i}") for i in (3, 1, 2)]
    items.sort(key=_mutation_order(tmp_path, "pkg.m.x_f__mutmut_1"))
    assert [i.nodeid for i in items] == ["tests/t.py::t3", "tests/t.py::t1", "tests/t.py::t2"]


def test_the_summary_names_judgements_whose_mutant_is_caught_or_gone():
    """mutmut numbers a changed function's mutants anew: an old judgement may now mean another change."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).parent.parent / "benchmarks" / "mutation_summary.py"
    spec = importlib.util.spec_from_file_location("mutation_summary", script)
    summary = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summary)
    results = {"a.py": {"m_1": "survived", "m_2": "killed", "m_3": "not checked"}, "b.py": {"m_4": "no tests"}}
    judged = {"m_1": "equivalent", "m_2": "equivalent", "m_3": "device", "m_4": "device", "m_5": "equivalent"}
    assert summary.stale(results, judged) == ["m_2", "m_5"]
