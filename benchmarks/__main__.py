"""``python -m benchmarks run|baseline|plot``: the speed suite (see benchmarks/suite.py)."""

from benchmarks.suite import main

raise SystemExit(main())
