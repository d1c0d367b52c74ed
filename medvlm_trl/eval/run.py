"""`medvlm-trl eval`: greedy answers of a model to a test split, scored per question, summarised per modality.

    medvlm-trl eval --model JZPeterPan/MedVLM-R1 --split sample --prompt r1 --out runs/eval/grpo_qwen2vl_2b

MedVLM-R1 (Pan et al., section 4) tests on 300 MRI (in domain), 300 CT and 300 X-ray (out of domain) questions with
greedy decoding and a strict rule; the RL-MedVQA study (Zhu et al., arXiv:2505.13973, section 4) tests on 7K PMC-VQA
questions and adds reasoning metrics (appendix B). This module runs either protocol:

- Rows: a registered dataset's test split (`medvlm_trl.data.registry.load_rows(name, "test")`; `sample` is the
  embedded sample set), or a split file: with `--dataset NAME` the data layer reads it (e.g. MedVLM-R1's manifest with
  `--dataset huatuo`), without it the file must hold contract rows (a JSON list or JSONL; relative image paths are
  read against `--data_dir`, else the file's folder). A manifest written by `make-split dataset` records how its
  data is read (`medvlm_trl.data.generic`: dataset name, data files, column mapping), so it needs no `--dataset`.
  Bad rows raise an error naming the row, or are skipped and counted with `--skip_bad_rows`.
- Prompts: built by `medvlm_trl.data.prompts` from the row and `--prompt r1|simple|study`; images are loaded and
  resized once by `medvlm_trl.data.images.prepare_image` to `--min_pixels`/`--max_pixels` (default 401408, the
  study's bound) on the grid of the model's own processor (`image_factor`: 28 pixels a token side for Qwen2-VL and
  Qwen2.5-VL, 32 for Qwen3-VL and Qwen3.5; a processor that merges no patches gets the pixel bounds only and sizes
  images itself), and the processor is given the same bounds, so it does not resize them again.
- Generation: greedy. vLLM when it is installed and a GPU is present (`vllm.LLM` with the chat-templated prompt and
  the image as `multi_modal_data`), else batched Hugging Face `generate` with left padding. `--backend` forces one.
- Scoring: reasoning prompts by `--answer_rule`: `strict` (MedVLM-R1's `score_strict`, the default) or `study` (the
  RL-MedVQA study's `score_study`: the correct letter or the correct option's text inside `<answer>`); the simple
  prompt by `score_letter` (see `medvlm_trl.eval.scoring`). `summary.json` records the rule as `scoring`. Every
  completion of a reasoning prompt is also audited (`medvlm_trl.eval.consistency`).
- Output, in `--out`: `predictions.jsonl`, one line per question (id, modality, source, completion, the parsed answer,
  score, audit), appended and flushed after every batch; `run.json`, the settings the predictions were made with;
  `summary.json`, accuracy %, n and random-guess % per modality and overall, the consistency rates, and the reasoning
  metrics asked for with `--metrics`.
- Resume: rerunning the same command skips every id already in `predictions.jsonl` (a line cut off by a kill is
  dropped and redone), so an interrupted run continues where it stopped and no question is scored twice. A rerun
  with other settings (model, split, prompt, pixels, tokens, backend, dtype) into the same folder is refused.
- `--limit N` (the first N rows, for smoke tests) is recorded in the summary (`limit`, `split_rows`) and such a
  summary is never `complete` (`finished` says whether its N rows are done), so neither `medvlm-trl table` nor
  `reproduce-table1` takes it for a full result. It is refused in a folder that holds predictions beyond its first N
  rows (a fuller result it would replace) unless `--overwrite true` discards them.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from medvlm_trl.cli import error_boundary
from medvlm_trl.configs import EvalArguments
from medvlm_trl.data import schema
from medvlm_trl.data.images import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, ImageLoadError, prepare_image
from medvlm_trl.data.prompts import REASONING_TEMPLATES, build_prompt
from medvlm_trl.data.schema import BadRowError, SkipReport
from medvlm_trl.errors import EvalInputError, wrapped_errors
from medvlm_trl.eval.consistency import DEFAULT_MIN_THINK_WORDS, audit_completion
from medvlm_trl.eval.generators import (  # noqa: F401 (importable from here, as before)
    Generator,
    HFGenerator,
    VLLMGenerator,
    _LazyGenerator,
    make_generator,
    model_image_factor,
    vllm_available,
)
from medvlm_trl.eval.results import (  # noqa: F401 (importable from here, as before)
    PREDICTIONS,
    RESUME_KEYS,
    RUN_CONFIG,
    SUMMARY,
    _append,
    _check_resume,
    _write_json,
    format_summary,
    read_predictions,
    summarize,
)
from medvlm_trl.eval.rows import load_eval_rows
from medvlm_trl.eval.scoring import parsed_answer, score_completion

__all__ = [
    "EvalArguments",
    "EvalInputError",
    "HFGenerator",
    "VLLMGenerator",
    "evaluate",
    "load_eval_rows",
    "main",
    "read_predictions",
    "run_eval",
    "summarize",
]


def _row_images(row: dict, min_pixels: int, max_pixels: int, factor: int) -> list:
    values = schema.row_images(row)
    return [prepare_image(v, min_pixels, max_pixels, row_id=row["id"], factor=factor) for v in values]


def _record(row: dict, completion: str, rule: str, min_think_words: int) -> dict:
    record = {
        "id": row["id"],
        "modality": row.get("modality"),
        "source": row.get("source"),
        "question": row["question"],
        "options": list(row["options"]),
        "answer": row["answer"],
        "completion": completion,
        "parsed": parsed_answer(completion, rule),
        "score": score_completion(completion, row["answer"], rule, row["options"]),
    }
    if rule != "letter":
        record["audit"] = audit_completion(completion, row["options"], min_think_words)
    return record


def evaluate(
    rows: Sequence[dict],
    generate: Generator,
    out_dir: str | os.PathLike,
    *,
    prompt: str = "r1",
    batch_size: int = 8,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_think_words: int = DEFAULT_MIN_THINK_WORDS,
    skip_bad_rows: bool = False,
    config: dict | None = None,
    progress: bool = True,
    answer_rule: str = "strict",
    limit: int | None = None,
    split_rows: int | None = None,
    image_factor: int | None = None,
) -> dict:
    """Generate, score and append every row not yet in `out_dir/predictions.jsonl`; write and return the summary.

    `generate(prompts, images) -> completions` is any generator (the HF or vLLM one, or a test double). `config` is
    recorded in `run.json` on the first run and must match on a resumed one (see `RESUME_KEYS`). A reasoning prompt is
    scored by `answer_rule` (`strict` or `study`), the simple prompt by the letter rule. `rows` may be
    the first `limit` of a test split of `split_rows` rows: the summary then records both and is not `complete`, and a
    folder holding predictions of rows beyond them (a fuller result) is refused. `image_factor` is
    the model processor's (`model_image_factor`), by default the generator's own `image_factor` attribute; None (a
    processor that merges no patches, or a test double without one) bounds the pixel count only.
    """
    from tqdm.auto import tqdm

    strict = prompt in REASONING_TEMPLATES
    factor = image_factor  # read from the generator when the first image is prepared (after the resume check)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"prompt": prompt, "min_pixels": min_pixels, "max_pixels": max_pixels, **(config or {})}
    rule = answer_rule if strict else "letter"
    config["scoring"] = rule
    _check_resume(out, config)
    predictions = out / PREDICTIONS
    done = read_predictions(predictions)  # keyed by str(id): JSON may hold ids of other types
    ids = {str(row["id"]) for row in rows}
    split_rows = len(rows) if split_rows is None else split_rows
    limited = limit is not None and len(rows) < split_rows
    beyond = done.keys() - ids
    if limited and beyond:
        raise EvalInputError(
            f"{out} holds predictions of {len(beyond)} row(s) beyond the first {limit} that --limit {limit} covers; "
            f"its summary would replace that fuller result: evaluate into another --out, or pass --overwrite true to "
            f"discard the earlier predictions"
        )
    todo = [row for row in rows if str(row["id"]) not in done]
    skipped = SkipReport()
    bar = tqdm(total=len(rows), initial=len(ids & done.keys()), desc="eval", unit="q", disable=not progress)
    try:
        for start in range(0, len(todo), batch_size):
            batch, prompts, images = [], [], []
            if factor is None:
                # 1: only the pixel bounds, for a processor that sizes images by its own rule (or a test double)
                factor = getattr(generate, "image_factor", None) or 1
            for row in todo[start : start + batch_size]:
                try:
                    row_images = _row_images(row, min_pixels, max_pixels, factor)
                except ImageLoadError as err:
                    if not skip_bad_rows:
                        raise
                    skipped.add(BadRowError(row["id"], "unreadable_image", str(err)))
                    bar.update(1)
                    continue
                batch.append(row)
                images.append(row_images)
                prompts.append(build_prompt(row["question"], row["options"], prompt, len(row_images)))
            if not batch:
                continue
            completions = generate(prompts, images)
            if len(completions) != len(batch):
                raise RuntimeError(f"the generator returned {len(completions)} completions for {len(batch)} prompts")
            records = [_record(r, c, rule, min_think_words) for r, c in zip(batch, completions)]
            _append(predictions, records)
            done.update((str(r["id"]), r) for r in records)
            bar.update(len(records))
    finally:
        bar.close()
    records = [done[str(row["id"])] for row in rows if str(row["id"]) in done]
    summary = summarize(records, strict=strict, scoring=rule)
    # Every row asked for has its prediction or was skipped as bad (a rerun would skip it again): nothing to resume.
    finished = len(records) + skipped.total == len(rows)
    summary.update(
        {
            "config": config,
            "rows": len(rows),
            "limit": limit,
            "split_rows": split_rows,
            "finished": finished,
            # ... and those rows are the whole test split: a limited eval is never a complete one.
            "complete": finished and not limited,
            "skipped": {"total": skipped.total, "counts": dict(skipped.counts), "examples": skipped.examples},
            "stale_predictions": len(done.keys() - ids),
        }
    )
    _write_json(out / SUMMARY, summary)
    return summary


def _compute_metrics(args: EvalArguments, records: list[dict]) -> dict:
    from medvlm_trl.eval.metrics import (
        ReasoningPerplexity,
        ReasoningSimilarity,
        ThinkingRewardJudge,
        reasoning_metrics,
    )

    names = args.metric_list()
    kwargs = {"device": args.device, "batch_size": args.metrics_batch_size}
    return reasoning_metrics(
        records,
        names,
        similarity=ReasoningSimilarity(args.similarity_model, **kwargs) if "similarity" in names else None,
        perplexity=ReasoningPerplexity(args.perplexity_model, **kwargs) if "perplexity" in names else None,
        judge=ThinkingRewardJudge(args.judge_model, mode=args.judge_mode, **kwargs)
        if "thinking_reward" in names
        else None,
        # The study counts reasoning length in tokens of the evaluated model's own tokenizer.
        length_tokenizer=args.model if "token_length" in names else None,
    )


def run_eval(args: EvalArguments, generator: Generator | None = None) -> dict:
    """Everything `medvlm-trl eval` does, callable from Python; `generator` replaces the model's own (tests)."""
    out = Path(args.out)
    if args.overwrite:
        for name in (PREDICTIONS, SUMMARY, RUN_CONFIG):
            (out / name).unlink(missing_ok=True)
    report = SkipReport()
    # The data layer's errors: an unknown dataset, a split file of another split, ... (a missing file names itself).
    with wrapped_errors(EvalInputError, f"split {args.split!r}: ", bare=(FileNotFoundError,)):
        rows = load_eval_rows(
            args.split,
            dataset=args.dataset,
            data_dir=args.data_dir,
            skip_bad_rows=args.skip_bad_rows,
            seed=args.seed,
            report=report,
            data={k: getattr(args, k) for k in ("data_files", "dataset_config", "dataset_columns", "image_root")},
        )
    split_rows = len(rows)
    if args.limit is not None:
        rows = rows[: args.limit]
    if not rows:
        raise EvalInputError(f"split {args.split!r} has no test rows")
    if args.backend == "auto":
        backend = "vllm" if vllm_available() else "hf"
    else:
        backend = args.backend
    if backend == "vllm" and generator is None and importlib.util.find_spec("vllm") is None:
        raise EvalInputError(
            "--backend vllm, but vLLM is not installed: pip install 'medvlm-trl[vllm]', or --backend hf"
        )
    config = {
        "model": args.model,
        "split": args.split,
        "dataset": args.dataset,
        "max_new_tokens": args.max_new_tokens,
        "backend": backend,
        "dtype": args.dtype,
        "chat_template_kwargs": args.chat_template_kwargs,
    }
    if generator is None:
        most_images = max(schema.num_images(r) for r in rows)
        generator = _LazyGenerator(
            lambda: make_generator(args, backend, most_images),
            lambda: model_image_factor(args.model, args.min_pixels, args.max_pixels, args.trust_remote_code),
        )
    summary = evaluate(
        rows,
        generator,
        out,
        prompt=args.prompt,
        batch_size=args.batch_size,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        min_think_words=args.min_think_words,
        skip_bad_rows=args.skip_bad_rows,
        config=config,
        progress=args.progress,
        answer_rule=args.answer_rule,
        limit=args.limit,
        split_rows=split_rows,
    )
    if report.total:
        summary["skipped"]["load"] = {"total": report.total, "counts": dict(report.counts)}
    names = args.metric_list()
    if names and args.prompt in REASONING_TEMPLATES:
        del generator  # the metric models need the memory the policy held
        gc.collect()
        done = read_predictions(out / PREDICTIONS)
        summary["metrics"] = _compute_metrics(args, [done[str(r["id"])] for r in rows if str(r["id"]) in done])
    _write_json(out / SUMMARY, summary)
    return summary


@error_boundary("eval")
def main(argv: list[str] | None = None) -> int:
    """`medvlm-trl eval --model PATH_OR_ID --split FILE_OR_NAME --prompt r1|simple|study [--out DIR] ...`."""
    from trl import TrlParser

    from medvlm_trl.recipe import one_line_errors, parse_args

    parser = TrlParser(EvalArguments, prog="medvlm-trl eval", description=__doc__.split("\n\n")[0])
    one_line_errors(parser)  # a bad flag value: one line naming the flag, not the usage text
    # A --config YAML: unknown keys and wrong value types, named by file and key; EvalArguments names a bad value.
    (args,) = parse_args(argv, parser)
    with wrapped_errors(EvalInputError, wrap=(FileNotFoundError,)):  # e.g. a model folder that is not there
        summary = run_eval(args)
    print(format_summary(summary))
    if summary["limit"] is not None and not summary["complete"]:
        print(f"limited eval: the first {summary['rows']} of {summary['split_rows']} rows (--limit), not a full result")
    print(f"wrote {Path(args.out) / SUMMARY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
