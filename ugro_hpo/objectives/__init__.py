"""What a trial runs. Each objective is built from the `objective` config group by `_target_`."""
