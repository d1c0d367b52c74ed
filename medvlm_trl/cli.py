"""`medvlm-trl`: one command, the subcommands people type. Each subcommand lives in the module that owns its work.

Every target is `main(argv: list[str] | None) -> int`; TRL-style training commands parse their own arguments with
`TrlParser`, so `medvlm-trl grpo --config recipe.yaml --learning_rate 2e-6` works as `trl grpo` does.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "make-tiny-model": ("medvlm_trl.tiny:main", "build a tiny offline VLM (--family) or causal LM into a folder"),
    "make-sample-data": ("medvlm_trl.data.sample:main", "write the embedded real-image sample set to a folder"),
    "grpo": ("medvlm_trl.grpo:main", "GRPO / Dr.GRPO training from a YAML recipe"),
    "sft": ("medvlm_trl.sft:main", "SFT baseline (full or LoRA) from a YAML recipe"),
    "dpo": ("medvlm_trl.dpo:main", "DPO baseline from a YAML recipe"),
    "eval": ("medvlm_trl.eval.run:main", "evaluate a model on a test split (resumable JSONL)"),
    "table": ("medvlm_trl.eval.table:main", "render a paper's Table 1 from result folders"),
    "make-split": ("medvlm_trl.data.splits:main", "write split manifests (MedVLM-R1, PMC-VQA subsets, your own data)"),
    "audit-split": ("medvlm_trl.data.audit:main", "find test items leaked into a training split"),
    "demo": ("medvlm_trl.demo:main", "tiny base model + phantom world: eval, GRPO, eval, table, reward curve"),
    "reproduce-table1": ("medvlm_trl.reproduce:main", "run every recipe of a paper's Table 1, then render it"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: medvlm-trl COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"medvlm-trl: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    sys.argv = [f"medvlm-trl {name}", *rest]  # TrlParser and argparse read the program name from here
    result = func(rest)
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
