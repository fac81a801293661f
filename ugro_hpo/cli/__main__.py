"""`python -m ugro_hpo.cli hpo ...`: the `ugro` command where it is not on PATH."""

from ugro_hpo.cli.ugro import main

if __name__ == "__main__":
    main()
