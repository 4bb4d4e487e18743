"""`python -m govssl.cli`."""

import sys

from govssl.cli import main

main(sys.argv[1:])
