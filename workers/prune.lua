-- Keeps the near-duplicate index bounded: drops record chunks whose latest
-- record was written before the cutoff, then sweeps a few buckets, dropping
-- entries that point into dropped chunks. A deletion arms a sweep of every
-- bucket once (a few per call), so after at most one round nothing of an
-- expired article is left in the index. Article records, clusters and
-- duplicate flags are kept. The keys are index.lua's (see its header).
--
-- KEYS[1] meta  KEYS[2] time  KEYS[3] docs  KEYS[4] buckets
-- ARGV[1] cutoff (epoch)  ARGV[2] most chunks dropped this call  ARGV[3] buckets swept this call
-- ARGV[4] K (records per chunk; the index's own, in meta, wins)
-- Returns {chunks dropped, bucket entries dropped}.

local K = tonumber(ARGV[4])
local old = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", "(" .. ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
for _, c in ipairs(old) do
  redis.call("HDEL", KEYS[3], c)
  redis.call("ZREM", KEYS[2], c)
end

local meta = redis.call("HMGET", KEYS[1], "level", "split", "entries", "cursor", "sweep", "per_chunk")
K = tonumber(meta[6]) or K -- as the index was created with
local level, split = tonumber(meta[1]) or 0, tonumber(meta[2]) or 0
local entries, cursor, sweep = tonumber(meta[3]) or 0, tonumber(meta[4]) or 0, tonumber(meta[5]) or 0
local n = 2 ^ level + split
if #old > 0 then sweep = n end
local dropped = 0
if sweep > 0 then
  local alive = {}
  local function live(seq)
    local c = math.floor((seq - 1) / K)
    if alive[c] == nil then alive[c] = redis.call("HEXISTS", KEYS[3], c) == 1 end
    return alive[c]
  end
  for _ = 1, math.min(tonumber(ARGV[3]), sweep) do
    cursor = cursor % n
    local s = redis.call("HGET", KEYS[4], cursor)
    if s then
      local keep = {}
      for p = 1, #s, 8 do
        local b1, b2, b3, b4 = string.byte(s, p + 4, p + 7)
        if live(((b1 * 256 + b2) * 256 + b3) * 256 + b4) then keep[#keep + 1] = string.sub(s, p, p + 7) end
      end
      if #keep * 8 < #s then
        dropped = dropped + (#s / 8 - #keep)
        if #keep == 0 then redis.call("HDEL", KEYS[4], cursor) else redis.call("HSET", KEYS[4], cursor, table.concat(keep)) end
      end
    end
    cursor = cursor + 1
    sweep = sweep - 1
  end
end
redis.call("HSET", KEYS[1], "entries", entries - dropped, "cursor", cursor % n, "sweep", sweep)
return {#old, dropped}
