"""`python -m bench.limiter`: see `bench.limiter.run`."""

import sys

from bench.limiter.run import main

if __name__ == "__main__":
    sys.exit(main())
