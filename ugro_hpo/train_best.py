"""`python -m ugro_hpo.train_best --study-name s ...`: the same as `ugro hpo train-best`."""

import sys

from ugro_hpo.cli import main

if __name__ == "__main__":
    main(["hpo", "train-best", *sys.argv[1:]])
