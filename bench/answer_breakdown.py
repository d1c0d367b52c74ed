"""Where the tiny base model's phantom answers go right or wrong: per option count and correct letter, the strict
accuracy, how often the reasoning reads the image's finding, names that finding's option, gives that option's own
letter, and which letters the answers use, from the predictions of `medvlm-trl eval --split phantom --prompt r1`.

The tiny base model (`medvlm_trl.tiny_base`) reasons in one shape, `THINK_TEMPLATE`:
`<think>Finding: {what it read}. {the option it names}, option {a letter}.</think><answer>{a letter}</answer>`, so
an answer can be traced: *reads* = the finding is the image's; *names* = the option named is the finding it read;
*look-up* = the letter given is the named option's own; *unparsed* = a completion not of that shape (scored as the
evaluator scored it). `python bench/answer_breakdown.py runs/demo/eval_before runs/demo/eval_after` prints one table
per eval folder (MRI rows by default); `--out FILE` also writes them as Markdown.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medvlm_trl.data.phantom import load_phantom  # noqa: E402
from medvlm_trl.data.prompts import LETTERS  # noqa: E402
from medvlm_trl.rewards import parse_completion  # noqa: E402
from medvlm_trl.tiny_base import THINK_TEMPLATE  # noqa: E402

_FIELDS = {"finding": r"(?P<finding>[^.<]+)", "option": r"(?P<option>[^<]+?)", "letter": r"(?P<letter>[A-Z])"}


def _pattern() -> re.Pattern:
    """THINK_TEMPLATE as a regular expression: its first `{letter}` a group, the answer's letter left free."""
    text = re.escape(THINK_TEMPLATE)
    for name, group in _FIELDS.items():
        text = text.replace(re.escape("{" + name + "}"), group, 1)
    return re.compile(text.replace(re.escape("{letter}"), r"(?P<answer>[^<]*)"))


PATTERN = _pattern()


def breakdown(predictions: list[dict], rows: dict[str, dict]) -> dict[str, Counter]:
    """Counts per group (`k=3, C` and `all`) over the predictions whose id is a row of `rows`."""
    groups: dict[str, Counter] = {}
    for pred in predictions:
        row = rows.get(pred["id"])
        if row is None:
            continue
        options, correct = row["options"], row["answer"]
        answer = (parse_completion(pred["completion"]).answer or "").strip()
        m = PATTERN.search(pred["completion"])
        counts = {"n": 1, "correct": answer == correct, f"answers {answer or '-'}": 1, "unparsed": m is None}
        if m is not None:
            named = m["option"]
            counts["reads"] = m["finding"] == row["finding"]
            counts["names"] = named == m["finding"]
            counts["look-up"] = named in options and LETTERS[options.index(named)] == m["letter"]
        for key in (f"k={len(options)}, {correct}", "all"):
            groups.setdefault(key, Counter()).update(counts)
    return groups


def table(groups: dict[str, Counter]) -> str:
    letters = sorted({k.split(" ", 1)[1] for c in groups.values() for k in c if k.startswith("answers ")})
    head = ["group", "n", "strict %", "reads %", "names %", "look-up %", "unparsed"] + [
        f"answers {L} %" for L in letters
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in sorted(groups, key=lambda k: (k == "all", k)):
        c = groups[key]
        pct = [100.0 * c[f] / c["n"] for f in ("correct", "reads", "names", "look-up")]
        shares = [100.0 * c[f"answers {L}"] / c["n"] for L in letters]
        cells = [key, str(c["n"]), *(f"{v:.1f}" for v in pct), str(c["unparsed"]), *(f"{v:.1f}" for v in shares)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("evals", nargs="+", help="eval folders (each holds predictions.jsonl)")
    parser.add_argument("--data-dir", default=None, help="phantom folder the evals used (default: the registered set)")
    parser.add_argument("--modality", default="MRI", help="test rows of this style only (default MRI)")
    parser.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    args = parser.parse_args(argv)
    rows = {r["id"]: r for r in load_phantom("test", root=args.data_dir, modality=args.modality)}
    parts = []
    for folder in args.evals:
        path = Path(folder) / "predictions.jsonl"
        if not path.exists():
            parser.error(f"{path} not found: give folders written by `medvlm-trl eval`")
        preds = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        groups = breakdown(preds, rows)
        if not groups:
            parser.error(f"no prediction of {path} is a {args.modality} row of the phantom test split")
        parts.append(f"### {folder} ({args.modality})\n\n{table(groups)}")
    text = "\n\n".join(parts)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
