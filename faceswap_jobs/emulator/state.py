"""Everything one running emulator holds: config, ledgers, rules, limiter, caches, resources.

Built by `create_app` (no I/O); the HTTP client and the result folder are opened by the
app's lifespan, so importing or constructing never touches the network or the disk.
"""

import random
from dataclasses import dataclass, field

from PIL import Image

from .background import BackgroundTasks
from .cache import AsyncLru
from .callbacks import CallbackLog
from .config import EmulatorConfig
from .faults import RuleBook
from .images import ComposedImage
from .ledger import Ledger
from .limiter import PerTokenLimiter
from .outbound import OutboundHttp
from .storage import ResultStore

IMAGE_CACHE_ENTRIES = 64
"""Decoded images kept (by URL, with their content digest)."""

COMPOSITE_CACHE_ENTRIES = 64
"""Result PNGs kept (by source digest, target digest and size)."""


@dataclass
class EmulatorState:
    """The mutable heart of the emulator; `config` is replaced whole on each update."""

    config: EmulatorConfig
    rng: random.Random
    ledger: Ledger = field(default_factory=Ledger)
    callbacks: CallbackLog = field(default_factory=CallbackLog)
    rules: RuleBook = field(default_factory=RuleBook)
    limiter: PerTokenLimiter = field(default_factory=PerTokenLimiter)
    background: BackgroundTasks = field(default_factory=BackgroundTasks)
    decoded: AsyncLru[str, tuple[str, Image.Image]] = field(
        default_factory=lambda: AsyncLru(IMAGE_CACHE_ENTRIES)
    )
    composed: AsyncLru[tuple[str, str, int], ComposedImage] = field(
        default_factory=lambda: AsyncLru(COMPOSITE_CACHE_ENTRIES)
    )
    malformed_served: int = 0
    _http: OutboundHttp | None = None
    _store: ResultStore | None = None

    @classmethod
    def from_config(cls, config: EmulatorConfig) -> "EmulatorState":
        """A fresh state; the random generator is seeded when the config has a seed."""
        return cls(config=config, rng=random.Random(config.seed))

    def open(self, http: OutboundHttp, store: ResultStore) -> None:
        """Attach the resources the lifespan opened."""
        self._http = http
        self._store = store

    @property
    def http(self) -> OutboundHttp:
        """The shared outbound HTTP client (only while the app is running)."""
        if self._http is None:
            raise RuntimeError("the emulator is not started (lifespan not run)")
        return self._http

    @property
    def store(self) -> ResultStore:
        """The result folder (only while the app is running)."""
        if self._store is None:
            raise RuntimeError("the emulator is not started (lifespan not run)")
        return self._store

    def reset(self) -> None:
        """Forget calls, deliveries, rules, limiter state and cached images; keep the config.

        A seeded generator is reseeded, so a drill replays the same draws after each reset.
        """
        self.ledger.clear()
        self.callbacks.clear()
        self.rules.clear()
        self.limiter.clear()
        self.malformed_served = 0
        self.decoded.clear()
        if self.config.seed is not None:
            self.rng.seed(self.config.seed)
