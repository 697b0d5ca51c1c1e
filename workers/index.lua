-- feedsift near-duplicate index: insert one article and decide its duplicate, atomically.
--
-- Atomicity is what keeps "no missed duplicate under concurrency": the
-- sequence number is taken, candidates are read and the article is inserted
-- in one step, so of any two colliding articles the later one always finds
-- the earlier, whichever workers and machines they ran on.
--
-- KEYS[1] dedup:seq   KEYS[2] dedup:doc   KEYS[3] dedup:root   KEYS[4] dedup:time
-- KEYS[5] article:<id>   KEYS[6] duplicates (zset)
-- ARGV[1] article id    ARGV[2] signature (num_perm little-endian uint32)
-- ARGV[3] bands         ARGV[4] rows per band       ARGV[5] threshold (0..1)
-- ARGV[6] now (epoch)   ARGV[7] band key prefix ("<prefix>dedup:band:")
-- ARGV[8] article key prefix   ARGV[9] cluster key prefix   ARGV[10] published (epoch)
-- ARGV[11] hash of the clean text (identical texts are "exact" duplicates)
--
-- dedup:doc values are "<seq>:<text hash>:<signature>".
-- Returns {seq, duplicate_of, similarity, kind, cluster}; empty strings when canonical.

local id, sig = ARGV[1], ARGV[2]
local nbands, width = tonumber(ARGV[3]), tonumber(ARGV[4]) * 4
local threshold, now = tonumber(ARGV[5]), ARGV[6]
local band_prefix, article_prefix, cluster_prefix = ARGV[7], ARGV[8], ARGV[9]
local published, text_hash = ARGV[10], ARGV[11]
local nperm = #sig / 4

local function parse(doc)
  local a = string.find(doc, ":", 1, true)
  local b = string.find(doc, ":", a + 1, true)
  return tonumber(string.sub(doc, 1, a - 1)), string.sub(doc, a + 1, b - 1), string.sub(doc, b + 1)
end

local function split(s)
  local out = {}
  for w in string.gmatch(s or "", "%S+") do out[#out + 1] = w end
  return out
end

local function band(s, i)
  return string.sub(s, i * width + 1, (i + 1) * width)
end

local function remove_from_bands(old_sig)
  for i = 0, nbands - 1 do
    local key, field = band_prefix .. i, band(old_sig, i)
    local kept = {}
    for _, m in ipairs(split(redis.call("HGET", key, field))) do
      if m ~= id then kept[#kept + 1] = m end
    end
    if #kept == 0 then redis.call("HDEL", key, field) else redis.call("HSET", key, field, table.concat(kept, " ")) end
  end
end

local seq
local existing = redis.call("HGET", KEYS[2], id)
if existing then
  local old_seq, _, old_sig = parse(existing)
  seq = old_seq
  if old_sig ~= sig then remove_from_bands(old_sig) end
else
  seq = redis.call("INCR", KEYS[1])
end

-- candidates: earlier articles sharing at least one band
local best, best_sim, best_seq, best_hash = nil, -1, nil, nil
local checked = {}
for i = 0, nbands - 1 do
  for _, cand in ipairs(split(redis.call("HGET", band_prefix .. i, band(sig, i)))) do
    if cand ~= id and not checked[cand] then
      checked[cand] = true
      local doc = redis.call("HGET", KEYS[2], cand)
      if doc then
        local cseq, chash, csig = parse(doc)
        if cseq < seq then
          local same = 0
          for k = 0, nperm - 1 do
            if string.sub(sig, k * 4 + 1, k * 4 + 4) == string.sub(csig, k * 4 + 1, k * 4 + 4) then same = same + 1 end
          end
          local sim = same / nperm
          if sim > best_sim or (sim == best_sim and cseq < best_seq) then
            best, best_sim, best_seq, best_hash = cand, sim, cseq, chash
          end
        end
      end
    end
  end
end

-- insert
redis.call("HSET", KEYS[2], id, seq .. ":" .. text_hash .. ":" .. sig)
for i = 0, nbands - 1 do
  local key, field = band_prefix .. i, band(sig, i)
  local members = redis.call("HGET", key, field)
  local present = false
  for _, m in ipairs(split(members)) do if m == id then present = true end end
  if not present then
    redis.call("HSET", key, field, members and (members .. " " .. id) or id)
  end
end
redis.call("ZADD", KEYS[4], now, id)

if best and best_sim >= threshold then
  local root = redis.call("HGET", KEYS[3], best) or best
  local kind = (best_hash == text_hash) and "exact" or "near"
  local sim = string.format("%.4f", best_sim)
  redis.call("HSET", KEYS[3], id, root)
  redis.call("SADD", cluster_prefix .. root, root, id)
  redis.call("HSET", article_prefix .. root, "cluster", root)
  redis.call("HSET", KEYS[5], "duplicate_of", best, "similarity", sim, "duplicate_kind", kind, "cluster", root)
  redis.call("ZADD", KEYS[6], published, id)
  return {seq, best, sim, kind, root}
end
redis.call("HDEL", KEYS[3], id)
redis.call("ZREM", KEYS[6], id)
redis.call("HSET", KEYS[5], "duplicate_of", "", "similarity", "", "duplicate_kind", "")
return {seq, "", "", "", ""}
