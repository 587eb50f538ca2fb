"""`python -m parity ...` is the `parity` command."""

from parity.cli import main

if __name__ == "__main__":
    main()
