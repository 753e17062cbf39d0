"""`python -m faceswap_jobs.emulator`: see `run.main`."""

from .run import main

if __name__ == "__main__":
    main()
