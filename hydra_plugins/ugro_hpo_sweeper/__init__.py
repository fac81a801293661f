"""ugro_hpo as a Hydra sweeper: ``-m hydra/sweeper=ugro_hpo`` (see `ugro_hpo.sweeper`)."""
