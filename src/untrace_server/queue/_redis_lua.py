"""The Redis queue's Lua script (queue/redis.py)."""

from __future__ import annotations

__all__ = ["LEASE_LUA"]

# A lease, in one atomic step: take entries whose lease ran out (idle for the horizon:
# see _hide_until) from the pending list, then new ones, and hide them all until the
# visibility timeout. Done as separate commands, a process killed between the read and
# the hiding left its entries idle from "now", that is hidden for the whole horizon
# (24 h) instead of the visibility timeout. XAUTOCLAIM looks at COUNT x 10 pending
# entries a call: the walk goes on from the cursor the last lease stopped at (ARGV[6]),
# at most 10 calls a lease, so a long pending list (a destination down for hours) is
# neither walked whole every time nor left unvisited past its first entries.
LEASE_LUA = """
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local want, horizon, hide_at = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local cursor = ARGV[6]
local out, ids = {}, {}
for _ = 1, 10 do
  local claimed = redis.call('XAUTOCLAIM', stream, group, consumer, horizon, cursor,
                             'COUNT', want - #out)
  cursor = claimed[1]
  for _, entry in ipairs(claimed[2]) do
    if entry[2] then
      out[#out + 1] = entry
      ids[#ids + 1] = entry[1]
    end
  end
  if cursor == '0-0' or #out >= want then break end
end
if #out < want then
  local fresh = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', want - #out,
                           'STREAMS', stream, '>')
  if fresh then
    for _, entry in ipairs(fresh[1][2]) do
      out[#out + 1] = entry
      ids[#ids + 1] = entry[1]
    end
  end
end
if #ids > 0 then
  -- (unpack expands only as the last argument: build the whole argument list)
  local args = {stream, group, consumer, 0}
  for _, id in ipairs(ids) do args[#args + 1] = id end
  args[#args + 1] = 'TIME'
  args[#args + 1] = hide_at
  args[#args + 1] = 'JUSTID'
  redis.call('XCLAIM', unpack(args))
end
return {cursor, out}
"""
