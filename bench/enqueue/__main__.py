"""`python -m bench.enqueue`: see `bench.enqueue.run`."""

import sys

from bench.enqueue.run import main

if __name__ == "__main__":
    sys.exit(main())
