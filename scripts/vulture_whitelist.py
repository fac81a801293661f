"""Names vulture (the dead-code finder `scripts/lint` runs) cannot see used, and why.

Each is called by name from outside our code: no import or call of ours reaches it. A name here
must say who calls it; anything else vulture reports is dead and goes.
"""
# ruff: noqa: B018, F821

# Built by Hydra from a config's `_target_` (conf/**/*.yaml), never imported by us.
_.MedianStopping  # conf/scheduler/median.yaml
_.auto_scheduler  # conf/scheduler/auto.yaml
_.PydocTopics  # conf/dataset/*.yaml
_.TextFiles
_.HubDataset
_.InstructionSource
_.ChatSource
_.PydocQA
_.TinyLlama  # conf/model/*.yaml
_.CustomObjective  # conf/objective/*.yaml
_.LoraObjective
_.SyntheticObjective
_.MultiFidelitySampler  # conf/search/multi_fidelity.yaml
_.MlflowTracker  # conf/tracking/*.yaml
_.WandbTracker

# Hydra's plugin discovery and callbacks.
_.UgroHpoSweeper  # hydra_plugins/: found by Hydra's plugin scan
_.SweepRecord  # hydra.callbacks in the sweep's config
_.on_multirun_start
_.on_multirun_end

# Ray Tune calls these on our subclasses.
_.stop_all  # Stopper.stop_all, once per loop of Tune's controller
_.on_trial_error  # Callback hooks (execution/group_release.py)
_.on_experiment_end
_.on_trial_recover  # (execution/retries.py)
iteration  # a Callback hook's argument, which Tune passes by keyword

# Called by a library through a name we set.
_.pre_tokenizer  # tokenizers reads the attribute we assign
_.search_space_file  # a key of an OmegaConf config, set as an attribute
_._flush_open_streams  # atexit.register, as a decorator

# The expression evaluator dispatches on the AST node's class name (space/expressions.py).
_._Constant
_._Name
_._BoolOp
_._UnaryOp
_._BinOp
_._Compare

# Read by scripts/bench (not scanned): the analytic optimum each benchmark plots against.
_.optimum

# Queries of our own kept for the tests that check behaviour through them: a search space's
# active parameters and violated constraints, what the multi-fidelity sampler fitted on.
_.active_names
_.violations
_.last_view
_.observed

# Fields of the rung view, written to summary.json through dataclasses.asdict.
_.promoted
