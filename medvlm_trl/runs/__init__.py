"""Run safety (`medvlm_trl.runs`): a training run never writes over another run, resumes only from a whole checkpoint, and says what it was.

Both papers train for hours on several GPUs (MedVLM-R1, Pan et al., section 4.1: 300 GRPO steps; the RL-MedVQA study,
Zhu et al., arXiv:2505.13973, Table S2: 1500 steps on 4 A100s with DeepSpeed ZeRO-2), so a run is an asset. Three rules
protect it, applied by every training entry point (`medvlm-trl grpo | sft | dpo`) before the model is loaded:

1. **One run per output dir.** A non-empty `output_dir` is refused unless the command resumes
   (`resume_from_checkpoint`) or overwrites (`overwrite_output_dir`, which transformers 5 no longer has, so it is
   ours: `RunSafetyArguments`). Overwriting empties the folder first, so no stale `checkpoint-*` of the old run is
   later mistaken for one of the new run; a non-empty folder that holds no run at all is never emptied.
2. **Resume from a whole checkpoint, on the same data, with its weights.** `resume_from_checkpoint: true` (or `last`)
   picks the newest complete `checkpoint-*`; a checkpoint cut short by a kill (no `trainer_state.json`, or no
   optimizer / scheduler state) is skipped with a warning, never loaded half. Every setting that changes what is
   trained (`training_settings`: the model, the data and its split, pixel bounds, prompt, rewards, loss, learning
   rate and schedule, batch, G, lengths, seed, world size, ...) must equal the checkpoint's record, or the resume is
   refused naming each key with its old and new value; only output, saving, logging and reporting settings
   (`FREE_SETTINGS`) may change. A deliberate change is named key by key with `allow_changed_settings` and recorded
   (`setting_changes` in the run record, and the model card). An explicit `--resume_from_checkpoint` on the command
   line wins over a recipe's `overwrite_output_dir: true`; a checkpoint already at `max_steps` is not resumed (there
   is nothing left to train, and transformers would train a step past the end). And the weights training continues
   from are checked to be the checkpoint's: transformers 5 saves Qwen2-VL under its original key names
   (`model.layers.*`) but resumes with a plain `load_state_dict` that expects the in-memory names
   (`model.language_model.layers.*`), so every weight but `lm_head` silently stays at its initial value
   (huggingface/transformers#43701); `restore_checkpoint_weights` loads them under the right names.
3. **Every checkpoint says what made it.** `RunInfoCallback` writes `medvlm_run.json` into each `checkpoint-*` and the
   output dir: the recipe path and SHA-256 of its text, the command line, the split's id (a hash of the dataset name,
   split, split-manifest contents and row limits), a hash of the training row ids, the library / TRL / transformers /
   torch versions, the world size, the seed, whether `trust_remote_code` was on, and the value of every setting
   that changes what is trained (`settings`).

Before any of this, a run that would train nothing (`max_steps: 0`, zero epochs, an empty batch) is refused: it would
save the untrained model as a trained one.

The modules, one idea each: `checkpoints` (which folders are whole, which one a resume continues from),
`output_dir` (one run per folder), `record` (`medvlm_run.json` and the settings a resume keeps), `prepare`
(`prepare_run`, the rules applied before the model is loaded), `weights` (the transformers#43701 fix) and
`callback` (`RunInfoCallback`). `medvlm_trl.run_safety` re-exports all of them under their old names, and the
recipe switches (`RunSafetyArguments`) live with every other recipe dataclass in `medvlm_trl.configs`.

Wiring, in an entry point's `main()` right after parsing, and where its trainer is built (`medvlm_trl.training`):

    prepare_run(training_args, script_args, argv=argv, model_args=model_args)  # refuses, resolves the resume, records
    trainer.add_callback(RunInfoCallback(script_args))  # record into every checkpoint-*; resumed weights checked
"""
