"""What application code imports: submit one swap or many, and read jobs and batches back.

Loading this package loads no worker code, no API client, no limiter and no settlement: a
process that only enqueues pays for enqueueing (a test checks `sys.modules`).
"""

from faceswap_jobs.producer.batch import Batch, submit_many
from faceswap_jobs.producer.submit import Producer, SwapJob, get_job, submit_swap

__all__ = ["Batch", "Producer", "SwapJob", "get_job", "submit_many", "submit_swap"]
