"""A local twin of the AceData Cloud Face Swap API, with fault injection and a call ledger.

It imports nothing from the rest of `faceswap_jobs`: the wire format is written by hand from
the vendor's documentation, so a misunderstanding shared by our client and the emulator cannot
hide. Run it with `python -m faceswap_jobs.emulator --help`.
"""

from .config import EmulatorConfig, FaultRates, parse_args
from .run import main
from .server import create_app

__all__ = ["EmulatorConfig", "FaultRates", "create_app", "main", "parse_args"]
