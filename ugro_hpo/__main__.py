"""`python -m ugro_hpo`: compose the config with Hydra and run one study per job."""

from ugro_hpo.cli.app import main

if __name__ == "__main__":
    main()
