"""``python -m certauto_core.testing.controlplane build``: build the test control plane."""

import sys

from certauto_core.testing.controlplane.build import main

sys.exit(main())
