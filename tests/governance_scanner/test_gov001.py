import pytest

from tests.governance_scanner.conftest import (
    FIXTURES,
    expected_findings,
    located,
    run_scan,
)


def test_every_bypass_in_the_bad_fixture_is_reported_at_its_line_and_column():
    result = run_scan("gov001_bad.py", "myplugins", select=("GOV001",))
    assert located(result) == expected_findings(FIXTURES / "gov001_bad.py")


def test_the_traps_are_not_reported():
    result = run_scan("gov001_good.py", "myplugins", select=("GOV001",))
    assert located(result) == set()


def test_a_plugin_class_referring_to_its_own_run_is_not_a_call():
    assert located(run_scan("myplugins", select=("GOV001",))) == set()


def test_class_hierarchies_are_resolved_across_files():
    alone = run_scan("gov001_bad.py", select=("GOV001",))
    with_bases = run_scan("gov001_bad.py", "myplugins", select=("GOV001",))
    # Without the plugin modules in the scan, StatsPlugin's ancestry is unknown.
    assert len(alone.violations) < len(with_bases.violations)


def test_configured_base_classes_decide_what_a_plugin_is():
    result = run_scan(
        "gov001_bad.py", "myplugins", select=("GOV001",), plugin_base_classes=("Unrelated",)
    )
    lines = {line for line, _, _ in located(result)}
    assert 77 not in lines  # StatsPlugin().run is no longer a plugin call
    assert 13 in lines  # but a value named plugin still is


def test_nothing_inside_the_toolrunner_module_is_reported():
    result = run_scan(
        "gov001_bad.py", "myplugins", select=("GOV001",), tool_runner_module="gov001_bad.py"
    )
    assert located(result) == set()


def test_a_name_imported_from_a_module_can_still_be_a_plugin(tmp_path):
    (tmp_path / "app.py").write_text(
        "import gmsh\nfrom tools import plugin\n\n"
        "def f(payload):\n    plugin.run(payload)\n    gmsh.model.active_plugin.run(payload)\n"
    )
    result = run_scan("app.py", root=tmp_path, select=("GOV001",))
    assert located(result) == {(5, 5, "GOV001")}


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_parallel_and_serial_scans_agree(start_method):
    """Every fixture, with the threshold lowered so that --jobs 2 really uses worker processes."""
    serial = run_scan(".", extend_exclude=("project",))
    parallel = run_scan(
        ".",
        extend_exclude=("project",),
        jobs=2,
        scanner={"parallel_threshold": 1, "start_method": start_method},
    )
    assert serial.files_scanned > 40
    assert len(serial.violations) > 40
    assert serial.violations == parallel.violations
    assert serial.suppressed == parallel.suppressed
    assert serial.files_scanned == parallel.files_scanned


def test_the_parallel_path_is_taken_only_from_the_threshold(monkeypatch):
    import multiprocessing

    pools = []
    real = multiprocessing.get_context

    def spy(method=None):
        pools.append(method)
        return real(method)

    monkeypatch.setattr(multiprocessing, "get_context", spy)
    run_scan("gov005_bad.py", "gov006_bad.py", jobs=2, scanner={"parallel_threshold": 3})
    assert pools == []
    run_scan("gov005_bad.py", "gov006_bad.py", jobs=2, scanner={"parallel_threshold": 2})
    assert pools == ["fork"]
