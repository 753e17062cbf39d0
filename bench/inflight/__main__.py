"""`python -m bench.inflight`: see `bench.inflight.run`."""

import sys

from bench.inflight.run import main

if __name__ == "__main__":
    sys.exit(main())
