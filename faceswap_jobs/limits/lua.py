"""Lua pieces the limits' scripts share: time is always Redis's, so hosts' clocks never mix."""

from __future__ import annotations

REDIS_NOW_LUA = """
local function redis_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""

WINDOW_MARGIN_LUA = """
local function window_margin(grown, grown_at, base, now)
  grown, grown_at = tonumber(grown), tonumber(grown_at)
  if not grown or not grown_at or grown <= base then return base end
  return base + (grown - base) * math.exp(-math.max(0, now - grown_at) / 60)
end
"""
"""Lua function `window_margin(grown, grown_at, base, now)`: the strict window's margin, grown by
429s the window did not prevent and fading back to `base` with a one-minute time constant."""
