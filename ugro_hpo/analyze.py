"""`python -m ugro_hpo.analyze --study-name s ...`: the same as `ugro hpo analyze`."""

import sys

from ugro_hpo.cli import main

if __name__ == "__main__":
    main(["hpo", "analyze", *sys.argv[1:]])
