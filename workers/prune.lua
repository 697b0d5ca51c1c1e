-- Drops index entries indexed before a cutoff, so the index stays bounded.
-- Article records, clusters and duplicate flags are kept.
-- KEYS[1] dedup:doc  KEYS[2] dedup:root  KEYS[3] dedup:time
-- ARGV[1] cutoff (epoch)  ARGV[2] max entries this call  ARGV[3] bands  ARGV[4] rows  ARGV[5] band key prefix
local width, nbands = tonumber(ARGV[4]) * 4, tonumber(ARGV[3])
local old = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[2]))
for _, id in ipairs(old) do
  local doc = redis.call("HGET", KEYS[1], id)
  if doc then
    local a = string.find(doc, ":", 1, true)
    local b = string.find(doc, ":", a + 1, true)
    local sig = string.sub(doc, b + 1)
    for i = 0, nbands - 1 do
      local key, field = ARGV[5] .. i, string.sub(sig, i * width + 1, (i + 1) * width)
      local kept = {}
      for m in string.gmatch(redis.call("HGET", key, field) or "", "%S+") do
        if m ~= id then kept[#kept + 1] = m end
      end
      if #kept == 0 then redis.call("HDEL", key, field) else redis.call("HSET", key, field, table.concat(kept, " ")) end
    end
  end
  redis.call("HDEL", KEYS[1], id)
  redis.call("HDEL", KEYS[2], id)
  redis.call("ZREM", KEYS[3], id)
end
return #old
