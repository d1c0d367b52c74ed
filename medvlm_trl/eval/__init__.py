"""Evaluation: strict scoring, the random-guess row, per-modality summaries, reasoning metrics and Table 1.

- [`score_strict`], [`score_letter`], [`random_guess_accuracy`]: the scoring rules (MedVLM-R1, section 4);
  [`score_study`]: the RL-MedVQA study's rule (the correct letter or the correct option's text).
- `medvlm_trl.eval.run`: `medvlm-trl eval`, resumable greedy evaluation of a model on a test split.
- `medvlm_trl.eval.consistency`: the per-row audit of reasoning against the answer.
- `medvlm_trl.eval.metrics`: the RL-MedVQA study's reasoning metrics (appendix B).
- `medvlm_trl.eval.table`: `medvlm-trl table`, each paper's Table 1 with the published values and our deltas.

Importing this package imports no torch; the modules that need it import it when they run.
"""

from medvlm_trl.eval.scoring import random_guess_accuracy, score_letter, score_strict, score_study

__all__ = ["random_guess_accuracy", "score_letter", "score_strict", "score_study"]
