"""``python -m callhub.cli``: the same command line as the ``callhub`` script."""

import sys

from callhub.cli.main import main

sys.exit(main())
