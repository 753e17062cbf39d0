"""`python -m bench.isolation`: see `bench.isolation.run`."""

import sys

from bench.isolation.run import main

if __name__ == "__main__":
    sys.exit(main())
