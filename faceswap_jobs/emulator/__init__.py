"""A local twin of the AceData Cloud Face Swap API, with fault injection and a call ledger.

It imports nothing from the rest of `faceswap_jobs`: the wire format is written by hand from
the vendor's documentation, so a misunderstanding shared by our client and the emulator cannot
hide. Run it with `python -m faceswap_jobs.emulator --help`.
"""

try:
    from .config import EmulatorConfig, FaultRates, parse_args
    from .run import main
    from .server import create_app
except ModuleNotFoundError as missing:
    if (missing.name or "").startswith("faceswap_jobs"):
        raise
    # A production install leaves the emulator's own dependencies out: say which extra has them.
    raise ModuleNotFoundError(
        f"the emulator needs {missing.name}, from the emulator extra: "
        "pip install 'faceswap-jobs[emulator]'",
        name=missing.name,
    ) from missing

__all__ = ["EmulatorConfig", "FaultRates", "create_app", "main", "parse_args"]
