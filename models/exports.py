"""Chargeback reports as a text table, CSV, XLSX (openpyxl) and FOCUS CSV.

Files are written whole or not at all: the content goes to a temporary file beside
the target, which replaces the target only when everything was written; on any
error the temporary file is removed.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from sqlalchemy import Engine

from models.chargeback import ChargebackReport, ChargebackRow
from models.focus import FOCUS_COLUMNS, X_COLUMNS, FocusRow
from spendwatch.errors import ExportError

__all__ = ["atomic_output", "chargeback_csv", "chargeback_table", "chargeback_xlsx",
           "focus_csv", "month_focus_rows", "report_columns", "write_chargeback_xlsx"]

_MONEY = ("direct", "corrections", "shared_in", "shared_out", "allocated")
_CURRENCY_FORMAT = '"$"#,##0.00'
_LIST_FORMAT = '"$"#,##0.0000'


@contextmanager
def atomic_output(path: str | Path, *, binary: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it becomes ``path`` when the block
    ends without an error, and is removed otherwise."""
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if not directory.is_dir():
        raise ExportError(f"cannot write {target}: the folder {directory} does not exist; "
                          f"create it or choose another -o")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=directory)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ExportError(f"cannot write {target}: {exc.strerror or exc}; nothing was "
                          f"written") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def report_columns(by: str) -> list[tuple[str, str]]:
    """(header, attribute) of a view's columns."""
    keys = {"team": [("team", "team_label"), ("cost centre", "cost_centre")],
            "project": [("team", "team_label"), ("project", "project"), ("note", "note"),
                        ("cost centre", "cost_centre")],
            "user": [("team", "team_label"), ("project", "project"), ("user", "user"),
                     ("note", "note")],
            "cost-centre": [("cost centre", "cost_centre"), ("name", "note")]}[by]
    return [*keys, ("requests", "requests"), ("input tokens", "input_tokens"),
            ("output tokens", "output_tokens"), ("unpriced tokens", "unpriced_tokens"),
            ("list cost", "cost_list"), ("direct", "direct"), ("corrections", "corrections"),
            ("shared in", "shared_in"), ("shared out", "shared_out"),
            ("allocated", "allocated"), ("% of month", "share_pct")]


def _value(row: ChargebackRow, attribute: str) -> object:
    if attribute in ("requests", "input_tokens", "output_tokens", "unpriced_tokens"):
        return row.counts.get(attribute, 0)
    return getattr(row, attribute)


def chargeback_table(report: ChargebackReport) -> str:
    from spendwatch.tables import format_table

    columns = report_columns(report.by)
    n_keys = sum(1 for _, a in columns if a in ("team_label", "cost_centre", "project", "note",
                                                "user"))
    rows = []
    for r in report.rows:
        values = []
        for _, attribute in columns:
            v = _value(r, attribute)
            if attribute == "cost_list":
                v = "" if v is None else f"{v:,.2f}"
            elif attribute == "share_pct":
                v = f"{v:.1f}%"
            elif isinstance(v, Decimal):
                v = f"{v:,.2f}"
            elif isinstance(v, int):
                v = f"{v:,}"
            values.append(v)
        rows.append(values)
    right = [False] * n_keys + [True] * (len(columns) - n_keys)
    out = [f"Chargeback {report.month:%Y-%m} ({report.status}), by {report.by}, USD "
           f"(contracted cost)", "",
           format_table([h for h, _ in columns], rows, right), "",
           f"month total ${report.total:,.2f} (list ${report.total_list:,.2f}); unallocated "
           f"${report.unallocated:,.2f} ({report.unallocated_pct:.1f}%) before shared costs"]
    if report.corrections:
        out.append(f"corrections of closed months included: ${report.corrections:,.2f}")
    for split in report.splits:
        out.append(f"  split {split.rule!r}: {split.pool or 'unallocated'} -> {split.team} "
                   f"{split.weight * 100:.2f}% = ${split.cents:,.2f} ({split.method})")
    out.extend(f"note: {n}" for n in report.notes)
    return "\n".join(out)


def chargeback_csv(report: ChargebackReport, stream: TextIO) -> None:
    columns = report_columns(report.by)
    writer = csv.writer(stream)
    writer.writerow(["month", "status", *(h for h, _ in columns)])
    for r in report.rows:
        writer.writerow([f"{report.month:%Y-%m}", report.status,
                         *("" if (v := _value(r, a)) is None else v for _, a in columns)])


def focus_csv(rows: Sequence[FocusRow], stream: TextIO) -> None:
    columns = (*FOCUS_COLUMNS, *X_COLUMNS)
    writer = csv.writer(stream)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv(row.get(c)) for c in columns])


def _csv(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def write_chargeback_xlsx(summary: ChargebackReport, detail: ChargebackReport,
                          path: Path) -> None:
    """Write :func:`chargeback_xlsx` to ``path``."""
    path.write_bytes(chargeback_xlsx(summary, detail))


def month_focus_rows(engine: Engine, report: ChargebackReport, *, timezone: str,
                     project_map: Mapping[str, str]) -> list[FocusRow]:
    """The FOCUS rows of ``report``'s month (``x_CostSource`` is ``reconciled`` for the
    days and projects OpenAI's bill was read for)."""
    from models.focus import focus_rows
    from models.pricing import PriceBook
    from models.reconciliation import reconciliation

    rec = reconciliation(engine, report.month, project_map)
    reconciled = {(r.day, r.project) for r in rec.rows if r.billed is not None}
    return focus_rows(report.lines, month=report.month, closed=report.closed,
                      timezone=timezone, cost_centre_of=report.config.cost_centre_of,
                      prices=PriceBook.load(engine), reconciled=reconciled)


def chargeback_xlsx(summary: ChargebackReport, detail: ChargebackReport) -> bytes:
    """A workbook: ``Summary`` (the totals and the ``summary`` view), ``Detail``
    (``detail``'s rows, team -> project), ``Splits`` (every shared-cost split).
    Amounts are numbers with a currency format."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = "Summary"
    bold = Font(bold=True)
    sheet.append([f"Chargeback {summary.month:%Y-%m}"])
    sheet["A1"].font = Font(bold=True, size=14)
    facts: list[tuple[str, object, str | None]] = [
        ("month", f"{summary.month:%Y-%m}", None), ("status", summary.status, None),
        ("total (contracted)", summary.total, _CURRENCY_FORMAT),
        ("total (list)", summary.total_list, _CURRENCY_FORMAT),
        ("unallocated before shared costs", summary.unallocated, _CURRENCY_FORMAT),
        ("corrections of closed months", summary.corrections, _CURRENCY_FORMAT),
        ("generated", dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), None)]
    for label, value, fmt in facts:
        sheet.append([label, value])
        if fmt:
            sheet.cell(sheet.max_row, 2).number_format = fmt
    sheet.append([])
    _table(sheet, summary, bold)
    for note in summary.notes:
        sheet.append([f"note: {note}"])
    _table(book.create_sheet("Detail"), detail, bold)
    splits = book.create_sheet("Splits")
    splits.append(["rule", "method", "pool", "team", "share", "amount"])
    for cell in splits[1]:
        cell.font = bold
    for s in summary.splits:
        splits.append([s.rule, s.method, s.pool or "unallocated", s.team, s.weight, s.cents])
        splits.cell(splits.max_row, 5).number_format = "0.00%"
        splits.cell(splits.max_row, 6).number_format = _CURRENCY_FORMAT
    for ws in book.worksheets:
        for column in ws.columns:
            letter = column[0].column_letter
            ws.column_dimensions[letter].width = min(
                max(len(str(c.value)) if c.value is not None else 0 for c in column) + 2, 40)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _table(sheet: object, report: ChargebackReport, bold: object) -> None:
    columns = report_columns(report.by)
    sheet.append([h for h, _ in columns])  # type: ignore[attr-defined]
    for cell in sheet[sheet.max_row]:  # type: ignore[attr-defined,index]
        cell.font = bold
    for r in report.rows:
        values = []
        for _, attribute in columns:
            v = _value(r, attribute)
            if attribute == "share_pct":
                v = v / 100  # type: ignore[operator]
            values.append(v)
        sheet.append(values)  # type: ignore[attr-defined]
        row = sheet.max_row  # type: ignore[attr-defined]
        for i, (_, attribute) in enumerate(columns, start=1):
            cell = sheet.cell(row, i)  # type: ignore[attr-defined]
            if attribute in _MONEY:
                cell.number_format = _CURRENCY_FORMAT
            elif attribute == "cost_list":
                cell.number_format = _LIST_FORMAT
            elif attribute == "share_pct":
                cell.number_format = "0.00%"
    total_row = ["total", *([""] * (len(columns) - 1))]
    sheet.append(total_row)  # type: ignore[attr-defined]
    row = sheet.max_row  # type: ignore[attr-defined]
    index = [a for _, a in columns].index("allocated") + 1
    cell = sheet.cell(row, index)  # type: ignore[attr-defined]
    cell.value = report.total
    cell.number_format = _CURRENCY_FORMAT
    cell.font = bold
