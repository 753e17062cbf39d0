"""`python -m faceswap_jobs` is the `faceswap-jobs` command."""

from faceswap_jobs.ops.cli import main

main()
