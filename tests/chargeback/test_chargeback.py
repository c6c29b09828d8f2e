"""The golden month: allocation by team, project and cost centre, to the cent."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from models.allocation_file import parse_allocation_file
from models.chargeback import apply_allocation, chargeback_report
from spendwatch.errors import AllocationFileError

from .conftest import ALLOCATION, MARCH


def rows_by(report, key):  # type: ignore[no-untyped-def]
    return {key(r): r for r in report.rows}


def test_direct_costs_unallocated_and_unpriced(golden):  # type: ignore[no-untyped-def]
    report = chargeback_report(golden, MARCH, by="team")
    assert report.status == "open"
    # 18.00 + 1.30 + 7.20 + 2.00 + 2.333336 = 30.833336 -> 30.83
    assert report.total_exact == D("30.833336")
    assert report.total == D("30.83")
    teams = rows_by(report, lambda r: r.team)
    assert {t: r.direct for t, r in teams.items()} == {
        "search": D("19.30"), "ads": D("7.20"), "platform": D("2.00"), "": D("2.33")}
    # no rules: allocated = direct; the unallocated line is shown with its share
    assert teams[""].team_label == "(unallocated)"
    assert teams[""].allocated == D("2.33")
    assert report.unallocated == D("2.33")
    assert report.unallocated_pct == D("7.56")  # 2.33 / 30.83 = 7.557...%
    assert sum(r.allocated for r in report.rows) == report.total
    # the mystery model's tokens are counted (10,000 + 1,000), its cost is not invented
    assert teams["search"].counts["unpriced_tokens"] == 11_000
    assert any("mystery" in n for n in report.notes)
    assert teams["search"].counts["requests"] == 5  # 3 ranker + 1 indexer + 1 mystery


def test_shared_cost_rules_proportional_and_fixed(golden, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "allocation.toml"
    path.write_text(ALLOCATION)
    apply_allocation(golden, path)
    report = chargeback_report(golden, MARCH, by="team")
    teams = rows_by(report, lambda r: r.team)
    # unallocated 2.33 (exact 2.333336) over search 19.30 : ads 7.20 (sum 26.50):
    #   search 2.333336 x 19.30 / 26.50 = 1.699373 -> 1.69 + the left-over cent = 1.70
    #   ads    2.333336 x  7.20 / 26.50 = 0.633963 -> 0.63
    # platform 2.00 fixed: search 60 % = 1.20, ads 40 % = 0.80
    split = {(s.pool, s.team): s.cents for s in report.splits}
    assert split == {("", "search"): D("1.70"), ("", "ads"): D("0.63"),
                     ("platform", "search"): D("1.20"), ("platform", "ads"): D("0.80")}
    assert teams["search"].direct == D("19.30")  # the original amount stays visible
    assert teams["search"].shared_in == D("2.90")  # 1.70 + 1.20
    assert teams["search"].allocated == D("22.20")  # 19.30 + 2.90
    assert teams["ads"].allocated == D("8.63")  # 7.20 + 0.63 + 0.80
    assert teams["platform"].shared_out == D("2.00")
    assert teams["platform"].allocated == D("0.00")
    assert teams[""].shared_out == D("2.33") and teams[""].allocated == D("0.00")
    assert sum(r.allocated for r in report.rows) == D("30.83")
    assert teams["search"].share_pct == D("72.01")  # 22.20 / 30.83 = 72.0078 %
    assert teams["ads"].share_pct == D("27.99")

    projects = chargeback_report(golden, MARCH, by="project")
    got = {(r.team, r.project): r.allocated for r in projects.rows}
    assert got == {("search", "ranker"): D("18.00"), ("search", "indexer"): D("1.30"),
                   ("search", "(shared costs)"): D("2.90"), ("ads", "bidder"): D("7.20"),
                   ("ads", "(shared costs)"): D("1.43"),
                   ("platform", "gateway"): D("2.00"),
                   ("platform", "(shared costs)"): D("-2.00"),
                   ("", ""): D("2.33"), ("", "(shared costs)"): D("-2.33")}
    assert sum(got.values()) == D("30.83")

    centres = chargeback_report(golden, MARCH, by="cost-centre")
    got = {r.cost_centre: r.allocated for r in centres.rows}
    # CC-100: ranker 18.00 + search's shares 2.90; CC-300 (a project beats its team):
    # indexer 1.30; CC-200: ads 7.20 + 1.43 and platform 2.00 - 2.00; unmapped: 2.33 - 2.33
    assert got == {"CC-100": D("20.90"), "CC-300": D("1.30"), "CC-200": D("8.63"),
                   "(unmapped)": D("0.00")}
    assert sum(got.values()) == D("30.83")


def test_mapping_file_naming_unknown_projects_is_refused(golden, tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "allocation.toml"
    path.write_text('[[cost_centre]]\ncode = "CC-1"\nprojects = ["search/rankr"]\n'
                    '\n[[rule]]\npool = "platfrom"\nmethod = "even"\n'
                    'effective_from = 2026-01-01\n')
    with pytest.raises(AllocationFileError) as info:
        apply_allocation(golden, path)
    text = str(info.value)
    assert f"{path}:1: project search/rankr has no recorded usage" in text
    assert "known projects:" in text and "search/ranker" in text
    assert f"{path}:5: team 'platfrom' has no recorded usage" in text
    assert chargeback_report(golden, MARCH).config.text == ""  # nothing was applied


def test_allocation_file_problems_with_lines_and_fixes() -> None:
    text = ('[[rule]]\nname = "x"\npool = "platform"\nmethod = "fixed"\n'
            'effective_from = 2026-01-15\npercentages = { search = "60", ads = "30" }\n'
            'colour = "red"\n\n[[cost_centre]]\nteams = ["a"]\n')
    with pytest.raises(AllocationFileError) as info:
        parse_allocation_file(text, "a.toml")
    problems = [p[:2] for p in info.value.problems]  # type: ignore[attr-defined]
    assert (5, "effective_from = 2026-01-15 is not the first day of a month") in problems
    assert (6, "the percentages sum to 90, not 100") in problems
    assert (7, "unknown key 'colour' in [[rule]]") in problems
    assert (9, "a cost centre needs a code") in problems
    assert "a.toml:6: the percentages sum to 90, not 100; change them" in str(info.value)


def test_user_level(golden):  # type: ignore[no-untyped-def]
    report = chargeback_report(golden, MARCH, by="user")
    got = {(r.team, r.project, r.user): r.allocated for r in report.rows}
    # ranker 18.00: u-1 two events (12.00), u-2 one (6.00); the mystery call had no user
    assert got[("search", "ranker", "u-1")] == D("12.00")
    assert got[("search", "ranker", "u-2")] == D("6.00")
    assert got[("search", "ranker", "(no user)")] == D("0.00")
    assert got[("search", "indexer", "(no user)")] == D("1.30")
    assert sum(got.values()) == D("30.83")


def test_cli_allocation_commands(golden, database, tmp_path: Path, capsys):  # type: ignore[no-untyped-def]
    from spendwatch.cli import main

    url = ["--database-url", database.url]
    path = tmp_path / "allocation.toml"
    path.write_text(ALLOCATION)
    assert main([*url, "allocation", "show"]) == 0
    assert "no allocation file applied" in capsys.readouterr().out
    assert main([*url, "allocation", "apply", str(path), "--dry-run"]) == 0
    assert "would apply" in capsys.readouterr().out
    assert main([*url, "allocation", "show"]) == 0
    assert "no allocation file applied" in capsys.readouterr().out  # a dry run stores nothing
    assert main([*url, "allocation", "apply", str(path)]) == 0
    assert "3 cost centre(s), 2 shared-cost rule(s)" in capsys.readouterr().out
    assert main([*url, "allocation", "show"]) == 0
    assert 'code = "CC-300"' in capsys.readouterr().out
    assert main([*url, "report", "chargeback", "--month", "2026-03", "--by", "cost-centre",
                 "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert "2026-03,open,CC-100,Search," in out and out.count("\n") == 5
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\npool = "platform"\nmethod = "fixed"\n'
                   'effective_from = 2026-01-01\npercentages = { search = "50" }\n')
    assert main([*url, "allocation", "apply", str(bad)]) == 2
    assert f"{bad}:5: the percentages sum to 50, not 100" in capsys.readouterr().err
