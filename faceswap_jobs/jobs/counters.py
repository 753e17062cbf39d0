"""What counting a job's end means, as Lua functions every ending script composes.

A job that ends bumps its batch's counter and stamps the batch's latest end on Redis time (the
batch's rate and ETA come from that stamp), and `batch retry-failed` takes a failure back out.
Written once here so every script that ends or revives a job counts the same way; `BatchStore`
composes the same functions for the counters it bumps itself.
"""

from __future__ import annotations

BATCH_COUNTING_LUA = """
local function count_batch_end(batch_key, counter)
  redis.call('HINCRBY', batch_key, counter, 1)
  local t = redis.call('TIME')
  redis.call('HSET', batch_key, 'last_end_at', t[1] + t[2] / 1000000)
end
local function uncount_batch_end(batch_key, counter)
  redis.call('HINCRBY', batch_key, counter, -1)
end
"""
"""Lua functions `count_batch_end(batch_key, counter)` and `uncount_batch_end(...)`."""
