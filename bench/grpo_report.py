"""How `grpo_step.py` reports: the memory estimate and one run as text, and all runs as a markdown table."""

from __future__ import annotations

from typing import Any

GOAL_STEP_S = 6.0  # issue 9: one H100, vLLM colocated
PAPER_STEP_S = 4 * 3600 / 300  # MedVLM-R1: about 4 hours for 300 steps on two A100s


def format_estimate(estimate: dict[str, Any], finetuning: str) -> str:
    lines = [f"memory ESTIMATE (analytic, not measured), {finetuning} fine-tuning, one GPU:"]
    for name, value in estimate["components_gb"].items():
        lines.append(f"  {name:<42} {value:>8.2f} GB")
    target = estimate["target_gb"]
    lines.append(f"  {'total, HF generation':<42} {estimate['total_hf_gb']:>8.2f} GB  (target {target:g} GB)")
    lines.append(
        f"  {'+ vLLM colocate reservation':<42} {estimate['vllm_reserved_gb']:>8.2f} GB  "
        f"(gpu_memory_utilization {estimate['vllm_gpu_memory_utilization']:g} of {target:g} GB)"
    )
    lines.append(f"  {'total, vLLM colocate':<42} {estimate['total_vllm_colocate_gb']:>8.2f} GB")
    if "float32_weights" in estimate:
        alt = estimate["float32_weights"]
        lines.append(
            f"  with float32 weights under bf16 autocast instead: {alt['total_hf_gb']:.2f} GB (HF), "
            f"{alt['total_vllm_colocate_gb']:.2f} GB (vLLM colocate)"
        )
    return "\n".join(lines)


def format_run(result: dict[str, Any]) -> str:
    s = result["settings"]
    memory = result["peak_memory"]
    if memory["kind"] == "cuda":
        peak = (
            f"peak GPU memory: {memory['peak_allocated_gb']:.2f} GB allocated, {memory['peak_reserved_gb']:.2f} GB "
            f"reserved by torch; {memory['device_used_at_end_gb']:.2f} GB in use on the device at the end"
        )
    else:
        peak = f"peak RSS (CPU): {memory['peak_rss_gb']:.3f} GB"
    lines = [
        f"== {result['backend']}, {result['finetuning']} fine-tuning, {result['model']} on {result['device']['name']}",
        f"setting: {s['prompts_per_step']} questions x G={s['num_generations']} = {s['completions_per_step']} "
        f"completions of exactly {s['completion_length']} tokens; prompt {s['prompt_tokens']} tokens "
        f"({s['image_tokens_per_prompt']} image tokens); {s['loss_type']}, beta {s['beta']}; "
        f"{result['trainable_params']:,} of {result['params']:,} parameters trained",
        f"steps timed: {len(result['step_s'])} (after {s['warmup_steps']} warm-up)",
        f"seconds per step (median): {result['median_step_s']:.3f}",
        f"  generation: {result['median_generation_s']:.3f} s, training (the rest): {result['median_training_s']:.3f} s",
    ]
    if result["median_weight_sync_s"] is not None:
        lines.append(f"  of which vLLM weight sync: {result['median_weight_sync_s']:.3f} s")
    lines += [
        f"generated tokens per second: {result['generated_tokens_per_s']:.1f} "
        f"(completion lengths {result['completion_length_min']}-{result['completion_length_max']})",
        peak,
    ]
    if result["meets_goal"] is not None:
        verdict = "meets" if result["meets_goal"] else "misses"
        lines.append(f"goal <= {GOAL_STEP_S:g} s/step (issue 9): {verdict}; the paper: about {PAPER_STEP_S:g} s/step")
    else:
        lines.append("goal <= 6 s/step: not applicable (not the 2B size on a GPU)")
    lines.append(format_estimate(result["memory_estimate"], result["finetuning"]))
    return "\n".join(lines)


def render_markdown(results: list[dict[str, Any]]) -> str:
    """A results table, one row per run, and the analytic estimate of the first."""
    head = (
        "| backend | fine-tuning | model | device | s/step (median) | generation s | training s | tokens/s | "
        "completion tokens | peak memory |\n|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = []
    for r in results:
        m = r["peak_memory"]
        peak = (
            f"{m['peak_allocated_gb']:.2f} GB allocated ({m['peak_reserved_gb']:.2f} reserved)"
            if m["kind"] == "cuda"
            else f"{m['peak_rss_gb']:.3f} GB RSS"
        )
        rows.append(
            f"| {r['backend']} | {r['finetuning']} | {r['model']} | {r['device']['name']} "
            f"({r['device'].get('cores', '')} cores) | {r['median_step_s']:.3f} | {r['median_generation_s']:.3f} | "
            f"{r['median_training_s']:.3f} | {r['generated_tokens_per_s']:.1f} | "
            f"{r['settings']['completions_per_step']} x {r['settings']['completion_length']} | {peak} |"
        )
    return head + "\n".join(rows) + "\n"
