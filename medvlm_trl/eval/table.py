"""`medvlm-trl table`: each paper's Table 1, our numbers beside the published ones.

    medvlm-trl table --paper medvlm_r1 runs/table1 --out runs/table1

RESULTS_DIR holds one folder per table row, named by its recipe (`zero_shot_qwen2vl_2b`, `grpo_qwen2vl_2b`, ...), each
with the `summary.json` that `medvlm-trl eval --out RESULTS_DIR/<row>` writes. The rows, their folder names, the
columns and the published values live in one data file, `medvlm_trl/resources/paper_results.json`.

- MedVLM-R1 (Pan et al., Table 1): accuracy per modality (MRI, CT, X-ray) and their average, for the zero-shot
  models, SFT, GRPO (MedVLM-R1) and the random guess. Our random-guess row is computed from the test rows (every eval
  summary carries it), not from a model.
- The RL-MedVQA study (Zhu et al., arXiv:2505.13973): overall accuracy and the reasoning metrics of its appendix B
  (similarity, perplexity, thinking reward, token length; mean ± std) per method.

Every cell reads `ours / paper (ours - paper)`. A row without results reads `missing`, never 0; a value its results
lack (a modality not in its test rows, a metric not computed) reads `—`; a cell the paper leaves empty reads `n.a.`; a
mark the paper prints beside a value (the study's `*`) follows it, explained in the notes. The notes also name the
scoring rule each row's eval used (`strict`, `study` or `letter`, see `medvlm_trl.eval.scoring`). A row whose eval
skipped bad test rows, was limited to its first rows (`--limit`) or is incomplete is marked `†`, with the reason and
the row count in the notes. A summary value of the wrong type is an error naming the file and the key.
Written to `--out` (default RESULTS_DIR): `table1_<paper>.md`, `table1_<paper>.csv`
(one line per cell) and `table1_<paper>.png`, bar charts of every column (matplotlib, Agg backend): our values as
bars, the published ones as black ticks (the study's metrics with their std as error bars, one panel per column).
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from medvlm_trl.cli import error_boundary
from medvlm_trl.errors import EvalInputError, wrapped_errors
from medvlm_trl.eval.results import SUMMARY
from medvlm_trl.recipe import OneLineArgumentParser

__all__ = [
    "Cell",
    "Table",
    "build_table",
    "load_paper_results",
    "main",
    "render_chart",
    "render_csv",
    "render_markdown",
]

PAPERS = ("medvlm_r1", "rl_medvqa")
MISSING = "missing"  # no results folder for the row
ABSENT = "—"  # the row has results, but not this value (a modality not in its test rows, a metric not computed)
NOT_AVAILABLE = "n.a."  # the paper leaves the cell empty
CAVEAT = "†"  # the row's eval skipped bad test rows, was limited or is incomplete: over fewer rows than the paper's


@dataclass
class Cell:
    """One table cell: our value (with its std for the study's metrics), the published one, and the rows behind ours."""

    ours: float | None = None
    ours_std: float | None = None
    paper: float | None = None
    paper_std: float | None = None
    n: int | None = None
    paper_mark: str = ""  # a mark the paper prints beside its value (the study's `*`)

    @property
    def delta(self) -> float | None:
        return None if self.ours is None or self.paper is None else self.ours - self.paper


@dataclass
class Table:
    paper: str
    name: str
    title: str
    columns: list[dict]
    rows: list[dict]  # {"key", "label", "cells": {column key: Cell}, "found", "caveats": [str], "scoring": str | None}
    notes: list[str]


def load_paper_results() -> dict:
    """The published values and the table layouts (`medvlm_trl/resources/paper_results.json`)."""
    text = resources.files("medvlm_trl").joinpath("resources", "paper_results.json").read_text()
    return json.loads(text)


def _value(data: Any) -> tuple[float | None, float | None]:
    """A published value: a number, or {"mean": x, "std": y} for the study's metrics."""
    if isinstance(data, dict):
        return data.get("mean"), data.get("std")
    return data, None


def _lookup(summary: dict, dotted: str) -> Any:
    node: Any = summary
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# The types of the summary values the table reads, by key wherever they appear (see `medvlm_trl.eval.run.evaluate`).
NUMBER_KEYS = {"accuracy", "random_guess", "average", "correct", "mean", "std"}
COUNT_KEYS = {"n", "rows", "split_rows", "limit", "total"}
FLAG_KEYS = {"complete", "finished"}


def _wrong_types(node: Any, where: str = "") -> list[str]:
    """`key: value` for every value of `node` (a summary, recursively) of another type than the table reads."""
    problems = []
    if isinstance(node, dict):
        for key, value in node.items():
            name = f"{where}.{key}" if where else str(key)
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if key in NUMBER_KEYS and value is not None and not is_number:
                problems.append(f"{name} is {value!r}, not a number")
            elif key in COUNT_KEYS and value is not None and not (is_number and float(value).is_integer()):
                problems.append(f"{name} is {value!r}, not a count")
            elif key in FLAG_KEYS and not isinstance(value, bool):
                problems.append(f"{name} is {value!r}, not true/false")
            elif key == "counts" and isinstance(value, dict):
                problems += [f"{name}.{k} is {v!r}, not a count" for k, v in value.items() if type(v) is not int]
            elif key in ("modalities", "overall", "skipped", "load") and not isinstance(value, dict):
                problems.append(f"{name} is {value!r}, not a mapping")
            else:
                problems += _wrong_types(value, name)
    return problems


def _read_summary(folder: Path) -> dict | None:
    path = folder / SUMMARY
    if not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON ({err})") from err
    if not isinstance(summary, dict) or "modalities" not in summary or "overall" not in summary:
        raise ValueError(f"{path}: not an eval summary (no 'modalities' / 'overall'); write it with medvlm-trl eval")
    wrong = _wrong_types(summary)
    if wrong:
        raise ValueError(f"{path}: wrong value type(s): {'; '.join(wrong)}")
    return summary


def _caveats(summary: dict | None) -> list[str]:
    """Why a row's numbers are over fewer test rows than asked for: bad rows skipped (`--skip_bad_rows`, when loading
    or when decoding an image), an eval limited to the first rows (`--limit`) or one stopped before every row had its
    prediction."""
    if summary is None:
        return []
    caveats = []
    skipped = summary.get("skipped") or {}
    counts: dict[str, int] = {}
    for part in (skipped, skipped.get("load") or {}):
        for reason, count in (part.get("counts") or {}).items():
            counts[reason] = counts.get(reason, 0) + int(count)
    total = sum(counts.values())
    if total:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(counts.items()))
        caveats.append(f"{total} bad test row(s) skipped ({reasons})")
    n = (summary.get("overall") or {}).get("n")
    if summary.get("limit") is not None and summary.get("complete") is False:
        caveats.append(
            f"limited eval (--limit {summary['limit']}): {n} of {summary.get('split_rows')} test rows have predictions"
        )
    elif summary.get("complete") is False:
        caveats.append(f"incomplete eval: {n} of {summary.get('rows')} rows have predictions (rerun it to resume)")
    return caveats


def _accuracy_cells(spec: dict, summary: dict | None, field: str) -> dict[str, Cell]:
    """MedVLM-R1 layout: one cell per modality column, plus the mean of the modality columns."""
    cells: dict[str, Cell] = {}
    for column in spec["columns"]:
        paper, _ = _value(spec["row"]["paper"].get(column["key"]))
        cell = Cell(paper=paper)
        if summary is not None and "modality" in column:
            group = summary["modalities"].get(column["modality"])
            if group is not None and group.get(field) is not None:
                cell.ours, cell.n = float(group[field]), group.get("n")
        cells[column["key"]] = cell
    for column in spec["columns"]:
        parts = column.get("average_of")
        if parts:
            values = [cells[p].ours for p in parts]
            if all(v is not None for v in values):  # an average over fewer columns would not be the paper's average
                cells[column["key"]].ours = sum(values) / len(values)
                cells[column["key"]].n = sum(cells[p].n or 0 for p in parts)
    return cells


def _study_cells(columns: list[dict], row: dict, summary: dict | None) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}
    for column in columns:
        paper, paper_std = _value(row["paper"].get(column["key"]))
        cell = Cell(paper=paper, paper_std=paper_std)
        found = _lookup(summary, column["summary"]) if summary is not None else None
        if isinstance(found, dict) and "mean" in found:
            cell.ours, cell.ours_std, cell.n = found.get("mean"), found.get("std"), found.get("n")
        elif isinstance(found, (int, float)):
            cell.ours = float(found)
            cell.n = _lookup(summary, "overall.n")
        cells[column["key"]] = cell
    return cells


def build_table(paper: str, results_dir: str | Path, paper_results: dict | None = None) -> Table:
    """Read every row's summary under `results_dir` and pair it with the published values."""
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; choose one of {list(PAPERS)}")
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder not found: {results_dir}")
    layout = (paper_results or load_paper_results())[paper]
    summaries = {row["key"]: _read_summary(results_dir / row["key"]) for row in layout["rows"]}
    notes: list[str] = []
    known = {row["key"] for row in layout["rows"]}
    extra = sorted(
        p.name for p in results_dir.iterdir() if p.is_dir() and p.name not in known and (p / SUMMARY).exists()
    )
    if extra:
        notes.append(f"folders not in the {paper} table (not shown): {', '.join(extra)}")
    model_summaries = [s for s in summaries.values() if s is not None]
    rows = []
    for row in layout["rows"]:
        summary = summaries[row["key"]]
        if paper == "rl_medvqa":
            cells = _study_cells(layout["columns"], row, summary)
            found = summary is not None
        elif row.get("computed") == "random_guess":
            # Every eval summary carries the random guess of its own test rows; any one of them gives the row.
            source = summary or (model_summaries[0] if model_summaries else None)
            cells = _accuracy_cells({"columns": layout["columns"], "row": row}, source, "random_guess")
            found = source is not None
            guesses = {
                json.dumps({m: g.get("random_guess") for m, g in sorted(s["modalities"].items())})
                for s in model_summaries
            }
            if len(guesses) > 1:
                notes.append("the result folders were evaluated on different test rows (their random guesses differ)")
        else:
            cells = _accuracy_cells({"columns": layout["columns"], "row": row}, summary, "accuracy")
            found = summary is not None
        for column, mark in (row.get("marks") or {}).items():
            cells[column].paper_mark = mark
        caveats = _caveats(summary)
        for caveat in caveats:
            notes.append(f"{CAVEAT} {row['label']}: {caveat}; its numbers are over fewer rows than the test split")
        scoring = _scoring(summary) if row.get("computed") is None else None
        rows.append(
            {"key": row["key"], "label": row["label"], "cells": cells, "found": found, "caveats": caveats,
             "scoring": scoring}
        )  # fmt: skip
    notes += _scoring_notes(rows)
    for mark, meaning in (layout.get("marks") or {}).items():
        notes.append(f"`{mark}`: {meaning}")
    if layout.get("notes"):
        notes.append(layout["notes"])
    return Table(
        paper=paper, name=layout["name"], title=layout["title"], columns=layout["columns"], rows=rows, notes=notes
    )


# What each scoring rule of `medvlm_trl.eval.scoring` counts, for the table's notes.
SCORING_RULES = {
    "strict": "strict (MedVLM-R1: the `<answer>` block is exactly the correct letter)",
    "study": "study (the correct letter or the correct option's text, normalised, inside `<answer>`)",
    "letter": "letter (a bare correct letter: `B`, `B.`, `B)` or `(B)`; the simple prompt)",
}


def _scoring(summary: dict | None) -> str | None:
    if summary is None:
        return None
    return (summary.get("config") or {}).get("scoring") or summary.get("scoring")


def _scoring_notes(rows: list[dict]) -> list[str]:
    """One note per scoring rule the rows' evals used, naming the rows."""
    by_rule: dict[str, list[str]] = {}
    for row in rows:
        if row.get("scoring"):
            by_rule.setdefault(row["scoring"], []).append(row["label"])
    return [
        f"scored by the {SCORING_RULES.get(rule, rule)} rule: {'; '.join(labels)}" for rule, labels in by_rule.items()
    ]


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _cell_text(cell: Cell, found: bool) -> str:
    ours = _fmt(cell.ours, cell.ours_std) or (ABSENT if found else MISSING)
    paper = _fmt(cell.paper, cell.paper_std) or NOT_AVAILABLE
    text = f"{ours} / {paper}{cell.paper_mark}"
    if cell.delta is not None:
        text += f" ({cell.delta:+.2f})"
    return text


def render_markdown(table: Table) -> str:
    """The table as Markdown: one row per method, each cell `ours / paper (ours - paper)`."""
    header = ["Method", *[c["label"] for c in table.columns]]
    lines = [
        f"### {table.title}",
        "",
        f"Each cell: ours / paper (ours − paper). `{MISSING}`: no results for the row; `{ABSENT}`: the row's results "
        f"lack this value; `{NOT_AVAILABLE}`: the paper leaves this cell empty; `{CAVEAT}`: the row's eval skipped "
        "bad test rows, was limited to its first rows or is incomplete (see the notes below).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(table.columns)) + "|",
    ]
    for row in table.rows:
        cells = [_cell_text(row["cells"][c["key"]], row["found"]) for c in table.columns]
        label = row["label"] + (f" {CAVEAT}" if row.get("caveats") else "")
        lines.append("| " + " | ".join([label, *cells]) + " |")
    if table.notes:
        lines += ["", *[f"- {note}" for note in table.notes]]
    return "\n".join(lines) + "\n"


def render_csv(table: Table) -> str:
    """One line per cell: paper, row, label, column, ours, ours_std, paper value, paper_std, delta, n, the row's
    caveats (skipped bad rows, an incomplete eval; `; `-separated, empty when none), the paper's mark beside its value
    and the scoring rule of the row's eval."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["paper", "row", "label", "column", "ours", "ours_std", "paper_value", "paper_std", "delta", "n", "caveats"]
        + ["paper_mark", "scoring"]
    )
    for row in table.rows:
        for column in table.columns:
            cell = row["cells"][column["key"]]
            writer.writerow(
                [
                    table.paper,
                    row["key"],
                    row["label"],
                    column["key"],
                    *["" if v is None else v for v in (cell.ours, cell.ours_std, cell.paper, cell.paper_std)],
                    "" if cell.delta is None else cell.delta,
                    "" if cell.n is None else cell.n,
                    "; ".join(row.get("caveats") or []),
                    cell.paper_mark,
                    row.get("scoring") or "",
                ]
            )
    return buffer.getvalue()


def render_chart(table: Table, path: str | Path) -> Path:
    """Bar charts of every column: our values as bars, the published ones as black ticks, a row without results
    labelled `missing` where its bars would be. MedVLM-R1: one grouped chart of its accuracy columns (one scale). The
    study: one panel per column (accuracy and each metric have their own scale), stds as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    panels = [table.columns] if table.paper == "medvlm_r1" else [[c] for c in table.columns]
    n_rows = len(table.rows)
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(6.0, 1.3 * n_rows + 2), 4.5 if len(panels) == 1 else 3.0 * len(panels))
    )
    axes = [axes] if len(panels) == 1 else list(axes)
    for ax, columns in zip(axes, panels):
        _chart_panel(ax, table, columns, plt, first=ax is axes[0], last=ax is axes[-1])
        # Explicit handles: a column without any bar (no results for it yet) still gets its colour in the legend.
        handles = [Patch(color=plt.get_cmap("tab10")(j), label=c["label"]) for j, c in enumerate(columns)]
        handles.append(Line2D([], [], color="black", marker="_", linestyle="none", markersize=14, label="paper"))
        ax.legend(handles=handles, fontsize=8, ncol=min(len(columns) + 1, 5))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _chart_panel(ax, table: Table, columns: list[dict], plt, first: bool, last: bool) -> None:
    n_rows, n_cols = len(table.rows), len(columns)
    width = 0.8 / n_cols
    accuracy = all(c["key"] in {"accuracy", "average"} or "modality" in c for c in columns)
    for j, column in enumerate(columns):
        xs = [i - 0.4 + width * (j + 0.5) for i in range(n_rows)]
        cells = [row["cells"][column["key"]] for row in table.rows]
        ours = [(x, c.ours, c.ours_std) for x, c in zip(xs, cells) if c.ours is not None]
        bars = ax.bar(
            [x for x, _, _ in ours],
            [v for _, v, _ in ours],
            yerr=[s or 0.0 for _, _, s in ours] if any(s for _, _, s in ours) else None,
            width=width * 0.95,
            color=plt.get_cmap("tab10")(j),  # fixed per column: a column without bars must not shift the colours
            capsize=2,
        )
        ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)  # a 0.0 bar is visible as its label
        paper = [(x, c.paper, c.paper_std) for x, c in zip(xs, cells) if c.paper is not None]
        if paper:
            ax.errorbar(
                [x for x, _, _ in paper],
                [v for _, v, _ in paper],
                yerr=[s or 0.0 for _, _, s in paper] if any(s for _, _, s in paper) else None,
                fmt="_",
                markersize=14,
                color="black",
                ecolor="gray",
                elinewidth=0.8,
                zorder=3,
            )
    if accuracy:
        ax.set_ylim(0, 100)
    else:
        ax.set_ylim(bottom=0)
    for i, row in enumerate(table.rows):
        if not row["found"]:
            ax.text(
                i, ax.get_ylim()[1] * 0.02, MISSING, ha="center", va="bottom", rotation=90, fontsize=8, color="dimgray"
            )
    ax.set_xticks(range(n_rows))
    ax.set_xlim(-0.6, n_rows - 0.4)  # the same x range in every panel, bars or not
    if last:
        ax.set_xticklabels([row["label"] for row in table.rows], rotation=30, ha="right", fontsize=8)
    else:
        ax.set_xticklabels([])
    ax.set_ylabel("accuracy (%)" if table.paper == "medvlm_r1" else columns[0]["label"], fontsize=8)
    if first:
        ax.set_title(table.name, fontsize=10)


def write_table(paper: str, results_dir: str | Path, out_dir: str | Path | None = None) -> dict[str, Path]:
    """Build the table and write its Markdown, CSV and PNG; returns the three paths."""
    table = build_table(paper, results_dir)
    out = Path(out_dir) if out_dir is not None else Path(results_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "markdown": out / f"table1_{paper}.md",
        "csv": out / f"table1_{paper}.csv",
        "png": out / f"table1_{paper}.png",
    }
    paths["markdown"].write_text(render_markdown(table))
    paths["csv"].write_text(render_csv(table))
    render_chart(table, paths["png"])
    return paths


@error_boundary("table")
def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl table --paper medvlm_r1|rl_medvqa RESULTS_DIR [--out DIR]`."""
    parser = OneLineArgumentParser(prog="medvlm-trl table", description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper", choices=PAPERS, required=True, help="whose Table 1 to render")
    parser.add_argument("results_dir", help="folder with one sub-folder (holding summary.json) per table row")
    parser.add_argument("--out", default=None, help="where to write the table (default: RESULTS_DIR)")
    args = parser.parse_args(argv)
    with wrapped_errors(EvalInputError, wrap=(FileNotFoundError, ValueError)):  # a missing folder, a damaged summary
        paths = write_table(args.paper, args.results_dir, args.out)
    print(paths["markdown"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
