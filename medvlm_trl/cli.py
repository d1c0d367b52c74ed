"""`medvlm-trl`: one command, the subcommands people type, and the one error boundary.

Every target is `main(argv: list[str] | None) -> int` in the module that owns its work; TRL-style training commands
parse their own arguments with `TrlParser`, so `medvlm-trl grpo --config recipe.yaml --learning_rate 2e-6` works as
`trl grpo` does.

The boundary: a command raises a `medvlm_trl.errors.MedVLMError` for input a person can fix (a recipe key, a row, an
image, a model id, an output folder), and `error_boundary` turns it into one line on stderr,
`medvlm-trl CMD: error: MESSAGE`, and exit status 2. No command catches and prints its own errors. Each command's
`main` carries the boundary too (`@error_boundary("grpo")`), so `python -m medvlm_trl.grpo` and
`accelerate launch -m medvlm_trl.grpo` report the same line.
"""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Callable

from medvlm_trl.errors import MedVLMError

PROG = "medvlm-trl"
EXIT_ERROR = 2

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


def error_line(command: str, err: BaseException) -> str:
    """The one line a command's error ends with.

    >>> error_line("grpo", ValueError("model_name_or_path is required"))
    'medvlm-trl grpo: error: model_name_or_path is required'
    """
    return f"{PROG} {command}: error: {err}"


def error_boundary(command: str) -> Callable:
    """Decorate a command's `main(argv) -> int`: a `MedVLMError` it raises is printed as `error_line` on stderr and
    the command returns 2. Anything else is a bug and keeps its traceback."""

    def wrap(main: Callable) -> Callable:
        if getattr(main, "error_boundary", None) is not None:
            return main

        @functools.wraps(main)
        def bounded(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except MedVLMError as err:
                print(error_line(command, err), file=sys.stderr)
                return EXIT_ERROR

        bounded.error_boundary = command
        return bounded

    return wrap


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
    sys.argv = [f"{PROG} {name}", *rest]  # TrlParser and argparse read the program name from here
    return run(name, rest)


def run(name: str, argv: list[str]) -> int:
    """What `medvlm-trl NAME ARGV...` returns, through the boundary; how one command runs another (`demo` runs
    `eval` and `grpo`, `reproduce-table1` every row's command) without importing it."""
    module_name, func_name = COMMANDS[name][0].split(":")
    func = error_boundary(name)(getattr(importlib.import_module(module_name), func_name))
    return int(func(list(argv)) or 0)


if __name__ == "__main__":
    sys.exit(main())
