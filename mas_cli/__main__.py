"""python -m mas_cli: the same as the `mas` command (and what torchrun runs)."""
import sys

from .cli import main

sys.exit(main())
