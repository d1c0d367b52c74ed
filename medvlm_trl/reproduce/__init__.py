"""`medvlm-trl reproduce-table1 --paper medvlm_r1|rl_medvqa --profile full|tiny`: every row of a paper's Table 1.

For each row of the paper's table (the rows, in order, of `medvlm_trl/resources/paper_results.json`, plus any other
recipe in the paper's folder) it trains the row if the row trains, evaluates it, and then renders the table with
`medvlm-trl table`. One YAML recipe per row, in `recipes/<paper>/<row>.yaml`; the file name says what runs it:

| file name    | command              | recipe keys                                                          |
|--------------|----------------------|----------------------------------------------------------------------|
| `zero_shot_*`| `medvlm-trl eval`    | `kind: eval` plus `medvlm-trl eval` arguments (`model`, `prompt`, ...) |
| `sft_*`      | `medvlm-trl sft`     | `BaselineScriptArguments`, TRL's `SFTConfig`, `ModelConfig`           |
| `dpo_*`      | `medvlm-trl dpo`     | `DPOScriptArguments`, TRL's `DPOConfig`, `ModelConfig`                |
| `grpo_*`, `dr_grpo_*` | `medvlm-trl grpo` | `MedVLMScriptArguments`, `MedVLMGRPOConfig`, `ModelConfig`     |

`recipes/<paper>/protocol.yaml` (`kind: protocol`) is how the paper tests every row: the test split and the
`medvlm-trl eval` settings all rows share, and the accelerate config training rows are launched with. A trained row
is evaluated from its output folder with the prompt it was trained with. MedVLM-R1's random-guess row is computed by
the table from the test rows, never run.

Outputs, under `--output-dir` (default `runs/<paper>/<profile>`): `recipes/<row>.yaml` (the recipe as run, after the
profile's overrides), `models/<row>/` (trained model, processor, model card with the test results), `results/<row>/`
(`medvlm-trl eval`'s predictions and summary) and `table1_<paper>.md|csv|png`. Re-running skips every row whose
results exist (a row whose training was cut off resumes from its last whole checkpoint); `--force` redoes them. A
row that fails is reported and reads `missing` in the table; nothing is filled in for it.

Profiles:

- `full`: the recipes as written: hub models, the papers' data and splits (`medvlm-trl make-split` first), bf16,
  vLLM. Each step runs in its own process (so every row starts with the GPU memory free), training under
  `accelerate launch --config_file recipes/accelerate/<protocol's accelerate_config>`.
- `tiny`: every row in the phantom world (`medvlm_trl.data.phantom`), on a CPU: the paper's recipe of each row with
  the override sets of `recipes/tiny/profile.yaml` (`TINY_TRAIN_OVERRIDES`, `TINY_COMMAND_OVERRIDES`,
  `TINY_EVAL_OVERRIDES`): the model becomes the tiny base model (`medvlm_trl.tiny_base`, which writes the r1 format
  and answers near chance), training reads the 600 MRI-style training phantoms with tiny-world step counts and
  learning rates, the semantic judge becomes the tiny causal LM, and every row is tested on the 900 phantom test
  questions (300 MRI in domain, 300 CT and 300 X-ray out of domain). What each row stands for: every model of the
  papers (2B to 72B, base or instruct, HuatuoGPT-Vision, LLaVA, Llama) becomes the one tiny base model, the only
  pretrained-like model of the phantom world; so the zero-shot rows are the tiny base model with the row's prompt
  (rows with the same prompt measure the same thing and are run once, the others copy its results), and the
  trained rows are the tiny base trained by the row's method (the study's base and instruct GRPO rows differ only
  where their recipes do). Its table says at its top that these are phantom-world numbers. `--max-steps N` and
  `--limit N` make a quicker run (fewer training steps, the first N test rows, marked `†` in the table).

The package, one idea a module: `recipes` (reading and checking a paper's recipes and the tiny profile), `plan`
(the rows and their steps) and `runner` (running the steps, recording the results, `main`).
"""

from __future__ import annotations

from medvlm_trl.errors import ReproduceError
from medvlm_trl.reproduce.plan import (  # noqa: F401 (importable from here, as before)
    Plan,
    Row,
    Step,
    _cpu_overrides,
    _eval_done,
    _has_gpu,
    _prompt_of,
    _trained_otherwise,
    _training_state,
    _write_yaml,
    apply_overrides,
    check_tiny_profile,
    make_plan,
    missing_inputs,
    table_rows,
)
from medvlm_trl.reproduce.recipes import (  # noqa: F401 (importable from here, as before)
    _TINY_PROFILE,
    COMMAND_PREFIXES,
    PAPERS,
    PROFILES,
    PROTOCOL_FILE,
    PROTOCOL_KEYS,
    PROTOCOL_ONLY_EVAL_KEYS,
    TINY_BANNER,
    TINY_COMMAND_OVERRIDES,
    TINY_EVAL_OVERRIDES,
    TINY_PROFILE_FILE,
    TINY_PROFILE_SECTIONS,
    TINY_TRAIN_OVERRIDES,
    TRAIN_COMMANDS,
    _profile_value,
    _Tiny,
    _unknown,
    _WhenSet,
    check_eval_arguments,
    command_for,
    eval_keys,
    eval_settings,
    load_eval_recipe,
    load_protocol,
    load_tiny_profile,
    load_yaml,
    make_parser,
    parse_training_recipe,
    recipes_root,
    training_keys,
)
from medvlm_trl.reproduce.runner import (  # noqa: F401 (importable from here, as before)
    Outcome,
    _record_results,
    _run_in_process,
    command_line,
    format_outcomes,
    main,
    render_table,
    run_plan,
    step_command,
)

__all__ = ["ReproduceError", "main", "make_plan", "run_plan"]
