"""``python -m hf_lrlaw.cli``: the same as ``lrlaw``."""

import sys

from hf_lrlaw.cli.main import main

sys.exit(main())
