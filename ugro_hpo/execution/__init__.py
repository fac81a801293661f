"""Running trials with Ray Tune: the launcher, the function each trial runs, what can end a
study early (signals, failure streaks, time), live progress, and our schedulers.

Only the names whose modules start without Ray are re-exported: the launcher, the trainable,
run control and the schedulers import Ray, and this package is imported while a config is
checked; import those from their modules."""

from ugro_hpo.execution.progress import Progress
from ugro_hpo.execution.ray_session import ensure_ray
from ugro_hpo.execution.resources import Capacity, placement_capacity, settle

__all__ = ["Capacity", "Progress", "ensure_ray", "placement_capacity", "settle"]
