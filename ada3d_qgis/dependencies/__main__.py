"""``python -m ada3d_qgis.dependencies``: see :mod:`.cli`."""

import sys

from .cli import main

sys.exit(main())
