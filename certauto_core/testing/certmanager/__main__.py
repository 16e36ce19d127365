"""``python -m certauto_core.testing.certmanager build``: build cert-manager's controller."""

import sys

from certauto_core.testing.certmanager.build import main

sys.exit(main())
