"""python -m mas_cli: the same as the `mas` command (and what torchrun runs)."""
import sys

from .main import main

sys.exit(main())
