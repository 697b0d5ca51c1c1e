-- feedsift near-duplicate index: for each article of a batch, take its sequence
-- number, find and verify its candidates, insert it, and record the decision,
-- all in one atomic step.
--
-- Atomicity is what keeps "no missed duplicate under concurrency": of any two
-- colliding articles the later one (higher sequence number) always finds the
-- earlier, whichever workers and machines they ran on, and the earlier one is
-- canonical. The decision procedure is the one of models/minhash.py (compare,
-- containment, better); tests run both on the same articles.
--
-- Layout (all under <prefix>dedup:):
--   doc:<c>     string: records of sequence numbers c*K+1 .. c*K+K, W bytes each:
--               id (16, NUL padded) | text hash (8) | shingle count (2) | 16-bit codes (2 per permutation)
--   bucket:<a>  string: 8-byte entries, band hash (4) | sequence number (4), big-endian.
--               Buckets are addressed by linear hashing on the band hash, so they
--               split as the index grows and stay about LOAD entries long.
--   meta        hash: level, split (linear hashing state), entries, cursor, sweep (prune.lua)
--   time        zset: chunk c -> latest indexing time of a record in it (the window)
--
-- KEYS[1] dedup:seq  KEYS[2] dedup:meta  KEYS[3] dedup:time  KEYS[4] duplicates (zset)
-- ARGV[1] threshold  ARGV[2] excerpt containment  ARGV[3] now  ARGV[4] K (records per chunk)
-- ARGV[5] W (record bytes)  ARGV[6] keys per article  ARGV[7] LOAD  ARGV[8] "<prefix>dedup:"
-- ARGV[9] article key prefix  ARGV[10] cluster key prefix  ARGV[11] smallest excerpt (shingles)
-- ARGV[12] largest excerpt, as a share of the longer text's shingles
-- then 4 per article: id, record, keys (4 bytes each: bands, lead bands, id), published
-- Returns one {seq, duplicate_of, similarity, kind, cluster} per article (empty strings when canonical).

local threshold, excerpt_min, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local K, W, NK, LOAD = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local base, article_prefix, cluster_prefix = ARGV[8], ARGV[9], ARGV[10]
local min_excerpt, max_ratio = tonumber(ARGV[11]), tonumber(ARGV[12])
local HEAD, IDB = 26, 16
local NP = (W - HEAD) / 2
local KIND = {"excerpt", "near", "exact"}

local meta = redis.call("HMGET", KEYS[2], "level", "split", "entries")
local level, split, entries = tonumber(meta[1]) or 0, tonumber(meta[2]) or 0, tonumber(meta[3]) or 0

local function u32(s, i)
  local b1, b2, b3, b4 = string.byte(s, i, i + 3)
  return ((b1 * 256 + b2) * 256 + b3) * 256 + b4
end

local function be32(n)
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
end

local function strip(s)
  local z = string.find(s, "\0", 1, true)
  if z then return string.sub(s, 1, z - 1) end
  return s
end

-- buckets ------------------------------------------------------------------
local buckets = {}
local function addr(h)
  local m = 2 ^ level
  local a = h % m
  if a < split then a = h % (m * 2) end
  return a
end

local function bucket(a)
  local s = buckets[a]
  if s == nil then
    s = redis.call("GET", base .. "bucket:" .. a) or ""
    buckets[a] = s
  end
  return s
end

local function set_bucket(a, s)
  buckets[a] = s
  if s == "" then redis.call("DEL", base .. "bucket:" .. a) else redis.call("SET", base .. "bucket:" .. a, s) end
end

local function find(s, kb, out)
  local init = 1
  while true do
    local p = string.find(s, kb, init, true)
    if not p then return end
    if (p - 1) % 8 == 0 then
      out[#out + 1] = u32(s, p + 4)
      init = p + 8
    else
      init = p + 1
    end
  end
end

-- records -------------------------------------------------------------------
local records, alive_chunks = {}, {}
local function chunk_of(seq) return math.floor((seq - 1) / K) end

local function alive(seq)
  local c = chunk_of(seq)
  local v = alive_chunks[c]
  if v == nil then
    v = redis.call("EXISTS", base .. "doc:" .. c) == 1
    alive_chunks[c] = v
  end
  return v
end

local function record(seq)
  local r = records[seq]
  if r == nil then
    local off = ((seq - 1) % K) * W
    r = redis.call("GETRANGE", base .. "doc:" .. chunk_of(seq), off, off + W - 1)
    if #r < W or string.byte(r, 1) == 0 then r = false end
    records[seq] = r
  end
  return r
end

local function write_record(seq, rec)
  local c = chunk_of(seq)
  local key = base .. "doc:" .. c
  if not alive(seq) then
    redis.call("SET", key, string.rep("\0", K * W))
    alive_chunks[c] = true
  end
  redis.call("SETRANGE", key, ((seq - 1) % K) * W, rec)
  records[seq] = rec
  redis.call("ZADD", KEYS[3], "GT", now, c)
end

local function split_one()
  local m = 2 ^ level
  local src = split
  local s = bucket(src)
  local keep, move = {}, {}
  for p = 1, #s, 8 do
    if alive(u32(s, p + 4)) then
      if u32(s, p) % (2 * m) == src then keep[#keep + 1] = string.sub(s, p, p + 7) else move[#move + 1] = string.sub(s, p, p + 7) end
    else
      entries = entries - 1
    end
  end
  set_bucket(src, table.concat(keep))
  set_bucket(src + m, table.concat(move))
  split = split + 1
  if split == m then level, split = level + 1, 0 end
end

local function insert(kb, seq)
  local a = addr(u32(kb, 1))
  local s = bucket(a)
  local have = {}
  find(s, kb, have)
  for _, x in ipairs(have) do if x == seq then return end end
  -- APPEND, not SET: what a script writes is replicated (and logged to the AOF) as its effects,
  -- and an APPEND of 8 bytes is 8 bytes there
  redis.call("APPEND", base .. "bucket:" .. a, kb .. be32(seq))
  buckets[a] = s .. kb .. be32(seq)
  entries = entries + 1
end

-- the decision ----------------------------------------------------------------
local function codes(r)
  local b = {string.byte(r, HEAD + 1, W)}
  local t = {}
  for k = 1, NP do t[k] = b[2 * k - 1] * 256 + b[2 * k] end
  return t
end

local function size(r)
  local hi, lo = string.byte(r, 25, 26)
  return hi * 256 + lo
end

local function containment(equal, less, more, a, b)
  if equal == 0 or a <= 0 then return 0 end
  local n = equal + less + more
  local lo, hi = 0.0, math.min(a, b)
  for _ = 1, 40 do
    local x = (lo + hi) / 2
    local g = equal / x + n / (a + b - x)
    if less > 0 then g = g - less / (a - x) end
    if more > 0 then g = g - more / (b - x) end
    if g > 0 then lo = x else hi = x end
  end
  return (lo + hi) / 2 / math.min(a, b)
end

-- returns kind rank (3 exact, 2 near, 1 excerpt, 0 none) and similarity
local function compare(nr, nc, orec)
  if string.sub(nr, 17, 24) == string.sub(orec, 17, 24) then return 3, 1.0 end
  local oc = codes(orec)
  local eq, lt, gt = 0, 0, 0
  for k = 1, NP do
    local x, y = nc[k], oc[k]
    if x == y then eq = eq + 1 elseif x < y then lt = lt + 1 else gt = gt + 1 end
  end
  local sim = eq / NP
  if sim >= threshold then return 2, sim end
  local sn, so = size(nr), size(orec)
  local a, b, less, more
  if sn <= so then a, b, less, more = sn, so, lt, gt else a, b, less, more = so, sn, gt, lt end
  if a >= min_excerpt and a <= max_ratio * b then
    local c = containment(eq, less, more, a, b)
    if c >= excerpt_min then return 1, c end
  end
  return 0, sim
end

-- the batch ---------------------------------------------------------------------
local out = {}
local narticles = (#ARGV - 12) / 4
for j = 0, narticles - 1 do
  local id, rec, keys, published = ARGV[13 + 4 * j], ARGV[14 + 4 * j], ARGV[15 + 4 * j], ARGV[16 + 4 * j]
  local ident = string.sub(rec, 1, IDB)
  local kb = {}
  for k = 1, NK do kb[k] = string.sub(keys, 4 * k - 3, 4 * k) end

  -- the article's own earlier record (a re-delivered or updated article keeps its number)
  local seq, same = nil, false
  local mine = {}
  find(bucket(addr(u32(kb[NK], 1))), kb[NK], mine)
  for _, s in ipairs(mine) do
    local r = record(s)
    if r and string.sub(r, 1, IDB) == ident then seq, same = s, (r == rec) end
  end
  if not seq then seq = redis.call("INCR", KEYS[1]) end

  -- candidates: earlier articles sharing a band or a lead band
  local nc = codes(rec)
  local seen, best_kind, best_sim, best_seq = {}, 0, -1, nil
  for k = 1, NK - 1 do
    local cands = {}
    find(bucket(addr(u32(kb[k], 1))), kb[k], cands)
    for _, c in ipairs(cands) do
      if c < seq and not seen[c] then
        seen[c] = true
        local r = record(c)
        if r then
          local kind, sim = compare(rec, nc, r)
          if kind > 0 and (kind > best_kind or (kind == best_kind and (sim > best_sim or (sim == best_sim and c < best_seq)))) then
            best_kind, best_sim, best_seq = kind, sim, c
          end
        end
      end
    end
  end

  -- insert
  if not same then
    write_record(seq, rec)
    for k = 1, NK do insert(kb[k], seq) end
    while entries > LOAD * (2 ^ level + split) do split_one() end
  end

  -- record the decision
  local akey = article_prefix .. id
  local previous = redis.call("HGET", akey, "cluster")
  if best_seq then
    local other = strip(string.sub(record(best_seq), 1, IDB))
    local root = redis.call("HGET", article_prefix .. other, "cluster")
    if not root or root == "" then root = other end
    if previous and previous ~= "" and previous ~= root and previous ~= id then
      redis.call("SREM", cluster_prefix .. previous, id)
    end
    local sim = string.format("%.4f", best_sim)
    redis.call("SADD", cluster_prefix .. root, root, id)
    redis.call("HSET", article_prefix .. root, "cluster", root)
    redis.call("HSET", akey, "duplicate_of", other, "similarity", sim, "duplicate_kind", KIND[best_kind], "cluster", root)
    redis.call("ZADD", KEYS[4], published, id)
    out[#out + 1] = {seq, other, sim, KIND[best_kind], root}
  else
    if previous and previous ~= "" and previous ~= id then
      redis.call("SREM", cluster_prefix .. previous, id)
      redis.call("HSET", akey, "cluster", "")
    end
    redis.call("ZREM", KEYS[4], id)
    redis.call("HSET", akey, "duplicate_of", "", "similarity", "", "duplicate_kind", "")
    out[#out + 1] = {seq, "", "", "", ""}
  end
end

redis.call("HSET", KEYS[2], "level", level, "split", split, "entries", entries)
return out
