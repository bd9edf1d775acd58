"""``python -m tumorsyn`` runs the ``tumorsyn`` command."""
import sys

from tumorsyn.cli.main import main

sys.exit(main())
