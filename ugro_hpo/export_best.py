"""`python -m ugro_hpo.export_best --study-name s ...`: the same as `ugro hpo export-best`."""

import sys

from ugro_hpo.cli import main

if __name__ == "__main__":
    main(["hpo", "export-best", *sys.argv[1:]])
