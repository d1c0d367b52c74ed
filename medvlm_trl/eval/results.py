"""The files of an evaluation folder, read by `medvlm-trl eval` (to resume), `table`, `reproduce-table1` and `demo`:
`predictions.jsonl` (one line per question, appended after every batch), `run.json` (the settings the predictions
were made with; a resumed run must match them) and `summary.json` (accuracy per modality and overall).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from medvlm_trl.errors import EvalInputError
from medvlm_trl.eval.consistency import consistency_rates
from medvlm_trl.eval.scoring import random_guess_accuracy

PREDICTIONS = "predictions.jsonl"
SUMMARY = "summary.json"
RUN_CONFIG = "run.json"
# Settings that change what a completion is; a resumed run must match them all.
RESUME_KEYS = (
    "model",
    "split",
    "dataset",
    "prompt",
    "max_new_tokens",
    "min_pixels",
    "max_pixels",
    "backend",
    "dtype",
    "scoring",
    "chat_template_kwargs",
)


def read_predictions(path: str | os.PathLike) -> dict[str, dict]:
    """The records of a predictions file by id. A last line cut off by a kill (no newline, not JSON) is removed from
    the file so that it is redone; a damaged line elsewhere is an error; a repeated id keeps its first record."""
    path = Path(path)
    if not path.exists():
        return {}
    data = path.read_bytes()
    records: dict[str, dict] = {}
    pos = 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        is_tail = number == len(lines)  # the text after the last newline: empty unless a write was cut short
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                if not is_tail:
                    raise EvalInputError(f"{path}: line {number} is not JSON ({err}); the file is damaged") from err
                with open(path, "r+b") as fh:
                    fh.truncate(pos)
                break
            if not isinstance(record, dict) or "id" not in record:
                raise EvalInputError(f"{path}: line {number} is not a prediction record")
            records.setdefault(str(record["id"]), record)
            if is_tail:  # a complete record whose newline was lost: restore it before appending after it
                with open(path, "ab") as fh:
                    fh.write(b"\n")
        pos += len(line) + 1
    return records


def _append(path: Path, records: Sequence[dict]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def _check_resume(out: Path, config: dict) -> None:
    path = out / RUN_CONFIG
    if path.exists():
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise EvalInputError(f"{path} is damaged ({err}); use another --out or --overwrite") from None
        if not isinstance(previous, dict):
            raise EvalInputError(f"{path} is not a run record; use another --out or --overwrite")
        diff = {k: (previous.get(k), config.get(k)) for k in RESUME_KEYS if previous.get(k) != config.get(k)}
        if diff:
            details = "; ".join(f"{k}: {a!r} before, {b!r} now" for k, (a, b) in diff.items())
            raise EvalInputError(
                f"{out} holds predictions made with other settings ({details}); use another --out or --overwrite"
            )
    else:
        _write_json(path, config)


def _group_summary(records: Sequence[dict], strict: bool) -> dict:
    n = len(records)
    correct = sum(r["score"] for r in records)
    group = {
        "n": n,
        "correct": correct,
        "accuracy": 100.0 * correct / n if n else None,
        "random_guess": random_guess_accuracy(records, by=None)["all"] if n else None,
    }
    if strict:
        group["consistency"] = consistency_rates(r["audit"] for r in records if "audit" in r)
    return group


def summarize(records: Sequence[dict], strict: bool = True, scoring: str | None = None) -> dict:
    """Accuracy %, n, random-guess % (and the consistency rates for reasoning prompts) per modality and overall; the
    `average` is the mean of the per-modality accuracies, as MedVLM-R1's Table 1 averages its three columns."""
    by_modality: dict[str, list[dict]] = {}
    for record in records:
        by_modality.setdefault(str(record.get("modality")), []).append(record)
    modalities = {name: _group_summary(group, strict) for name, group in sorted(by_modality.items())}
    accuracies = [m["accuracy"] for m in modalities.values() if m["accuracy"] is not None]
    return {
        "scoring": scoring or ("strict" if strict else "letter"),
        "modalities": modalities,
        "overall": _group_summary(records, strict),
        "average": sum(accuracies) / len(accuracies) if accuracies else None,
    }


def format_summary(summary: dict) -> str:
    """A few human lines: accuracy per modality beside the random guess."""
    lines = [f"{'modality':<18} {'n':>6} {'accuracy':>9} {'random':>8}"]
    for name, group in [*summary["modalities"].items(), ("overall", summary["overall"])]:
        acc = "-" if group["accuracy"] is None else f"{group['accuracy']:.2f}"
        rnd = "-" if group["random_guess"] is None else f"{group['random_guess']:.2f}"
        lines.append(f"{name:<18} {group['n']:>6} {acc:>9} {rnd:>8}")
    if summary.get("average") is not None:
        lines.append(f"{'average':<18} {'':>6} {summary['average']:>9.2f}")
    return "\n".join(lines)
