"""`python -m bench.pool`: see `bench.pool.run`."""

import sys

from bench.pool.run import main

if __name__ == "__main__":
    sys.exit(main())
