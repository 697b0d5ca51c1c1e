-- feedsift near-duplicate index: for each article of a batch, take its sequence
-- number, find and verify its candidates, insert it and return the decision,
-- all in one atomic step.
--
-- Atomicity is what keeps "no missed duplicate under concurrency": of any two
-- colliding articles the later one (higher sequence number) always finds the
-- earlier, whichever workers and machines they ran on, and the earlier one is
-- canonical. The decision procedure is the one of models/minhash.py (compare,
-- opening, containment, better); tests run both on the same articles.
--
-- Keys: the index's whole state lives in five keys, all passed in KEYS and all
-- under the hash tag {dedup}, so the script runs unchanged on Redis Cluster
-- (one slot). Buckets and record chunks are fields of two hashes rather than
-- keys of their own: which bucket and which chunk a batch touches is only known
-- inside the script (linear hashing moves buckets as the index grows, and a
-- candidate's chunk follows from the sequence numbers found in its buckets), so
-- computing their key names in the caller would need a read, a guess and a
-- retry. Article hashes, clusters and the duplicates zset are not touched here:
-- the script returns its decisions and the caller writes them (Store.apply_decisions).
--
--   KEYS[1] seq      string: counter that orders articles
--   KEYS[2] meta     hash: level, split, entries (linear hashing), per_chunk (K, fixed at creation),
--                    cursor, sweep (prune.lua)
--   KEYS[3] time     zset: chunk c -> latest time a record was written in it (the window)
--   KEYS[4] docs     hash: chunk c -> records of sequence numbers c*K+1 .. c*K+K, W bytes each,
--                    fields as `layout` gives them (MinHasher.layout in models/minhash.py)
--   KEYS[5] buckets  hash: address a -> 8-byte entries, band hash (4) | sequence number (4),
--                    big-endian; addressed by linear hashing on the band hash, so buckets
--                    split as the index grows and stay about LOAD entries long
--
-- ARGV[1] JSON: layout {field: [offset, bytes]}, record (W), per_chunk (K), load, now, and the
--         verdict: near, names, excerpt, excerpt_words, excerpt_ratio, contained, slack
-- then 3 per article: id, record (root left blank), keys (4 bytes each: bands, lead key, id)
-- Returns {id, seq, duplicate_of, kind, similarity ("%.4f" or ""), cluster, new ("1" when the article
-- got its sequence number in this call, else "")} per article, each followed by those of earlier
-- articles whose verdict it changed (a teaser joining its story's cluster).

-- library functions as locals: a global table lookup fewer on every call in the loops below
local byte, sub, sfind, char, concat = string.byte, string.sub, string.find, string.char, table.concat
local floor, min, max = math.floor, math.min, math.max
local cfg = cjson.decode(ARGV[1])
local F = {}
for name, f in pairs(cfg.layout) do F[name] = {f[1] + 1, f[1] + f[2]} end
local W, K, LOAD, now = cfg.record, cfg.per_chunk, cfg.load, cfg.now
local NEAR, NAMES, EXCERPT = cfg.near, cfg.names, cfg.excerpt
local EX_WORDS, EX_RATIO, SLACK = cfg.excerpt_words, cfg.excerpt_ratio, cfg.slack
local CONTAINED = cfg.contained
local NP = (F.codes[2] - F.codes[1] + 1) / 2
local NN = (F.names[2] - F.names[1] + 1) / 2
local L = (F.lead[2] - F.lead[1] + 1) / 2
local KIND = {"excerpt", "near", "exact"}

local meta = redis.call("HMGET", KEYS[2], "level", "split", "entries", "per_chunk")
-- records per chunk is fixed when the index is created: the chunk of a sequence number must not move
K = tonumber(meta[4]) or K
-- a new index starts with 2^LEVEL0 buckets: past 128 fields the buckets hash is a table from its first
-- batch on (a small hash is one packed list, rewritten whole on every write while it grows)
local level, split, entries = tonumber(meta[1]) or cfg.level0, tonumber(meta[2]) or 0, tonumber(meta[3]) or 0

local function u32(s, i)
  local b1, b2, b3, b4 = byte(s, i, i + 3)
  return ((b1 * 256 + b2) * 256 + b3) * 256 + b4
end

local function be32(n)
  return char(floor(n / 16777216) % 256, floor(n / 65536) % 256, floor(n / 256) % 256, n % 256)
end

local function field(r, name) return sub(r, F[name][1], F[name][2]) end

local function strip(s)
  local z = sfind(s, "\0", 1, true)
  if z then return sub(s, 1, z - 1) end
  return s
end

-- buckets: read once per batch, written once at the end --------------------
local buckets, dirty_buckets = {}, {}
local function addr(h)
  local m = 2 ^ level
  local a = h % m
  if a < split then a = h % (m * 2) end
  return a
end

local function bucket(a)
  local s = buckets[a]
  if s == nil then
    s = redis.call("HGET", KEYS[5], a) or ""
    buckets[a] = s
  end
  return s
end

local function set_bucket(a, s)
  buckets[a] = s
  dirty_buckets[a] = true
end

local function find(s, kb, out)
  local init = 1
  while true do
    local p = sfind(s, kb, init, true)
    if not p then return end
    if (p - 1) % 8 == 0 then
      out[#out + 1] = u32(s, p + 4)
      init = p + 8
    else
      init = p + 1
    end
  end
end

-- records: chunks read once per batch, written once at the end --------------
local chunks, dirty_chunks = {}, {}
local function chunk_of(seq) return floor((seq - 1) / K) end

local function chunk(c)
  local ch = chunks[c]
  if ch == nil then
    ch = {s = redis.call("HGET", KEYS[4], c), put = {}}
    chunks[c] = ch
  end
  return ch
end

-- whether a sequence number's chunk is still in the window (HEXISTS: a split only asks, it need not read it)
local live = {}
local function alive(seq)
  local c = floor((seq - 1) / K)
  local v = live[c]
  if v == nil then
    if chunks[c] ~= nil then v = chunks[c].s ~= false else v = redis.call("HEXISTS", KEYS[4], c) == 1 end
    live[c] = v
  end
  return v or dirty_chunks[c] ~= nil
end

local function record(seq)
  local ch = chunk(chunk_of(seq))
  local slot = (seq - 1) % K
  if ch.put[slot] then return ch.put[slot] end
  if not ch.s then return false end
  local r = sub(ch.s, slot * W + 1, slot * W + W)
  if #r < W or byte(r, 1) == 0 then return false end
  return r
end

local function write_record(seq, rec)
  local c = chunk_of(seq)
  chunk(c).put[(seq - 1) % K] = rec
  dirty_chunks[c] = true
end

local function split_one()
  local m = 2 ^ level
  local src = split
  local s = bucket(src)
  local keep, move = {}, {}
  for p = 1, #s, 8 do
    local b1, b2, b3, b4, s1, s2, s3, s4 = byte(s, p, p + 7)
    if alive(((s1 * 256 + s2) * 256 + s3) * 256 + s4) then
      if (((b1 * 256 + b2) * 256 + b3) * 256 + b4) % (2 * m) == src then
        keep[#keep + 1] = sub(s, p, p + 7)
      else
        move[#move + 1] = sub(s, p, p + 7)
      end
    else
      entries = entries - 1
    end
  end
  set_bucket(src, concat(keep))
  set_bucket(src + m, concat(move))
  split = split + 1
  if split == m then level, split = level + 1, 0 end
end

-- `fresh`: a new sequence number, so none of its entries can be in the bucket yet
local function insert(a, kb, seq, fresh)
  local s = bucket(a)
  local entry = kb .. be32(seq)
  local init = 1
  while not fresh do
    local p = sfind(s, entry, init, true)
    if not p then break end
    if (p - 1) % 8 == 0 then return end
    init = p + 1
  end
  set_bucket(a, s .. entry)
  entries = entries + 1
end

-- the decision ----------------------------------------------------------------
local function u16s(r, name)
  local b = {byte(r, F[name][1], F[name][2])}
  local t = {}
  for k = 1, #b / 2 do t[k] = b[2 * k - 1] * 256 + b[2 * k] end
  return t
end

local function uint(r, name)
  local v = 0
  for i = F[name][1], F[name][2] do v = v * 256 + byte(r, i) end
  return v
end

local function with_uint(r, name, v)
  local t = {}
  for i = F[name][2] - F[name][1] + 1, 1, -1 do
    t[i] = char(v % 256)
    v = floor(v / 256)
  end
  return sub(r, 1, F[name][1] - 1) .. concat(t) .. sub(r, F[name][2] + 1)
end

local function with_id(r, name, id)
  local width = F[name][2] - F[name][1] + 1
  return sub(r, 1, F[name][1] - 1) .. id .. string.rep("\0", width - #id) .. sub(r, F[name][2] + 1)
end

-- a record's lead, names and codes are unpacked when the decision first asks for them: most candidates
-- are settled by their codes, an exact copy by its hash alone
local UNPACKED = {lead = true, names = true, codes = true}
local lazy = {__index = function(t, name)
  if UNPACKED[name] then
    local v = u16s(t.r, name)
    rawset(t, name, v)
    return v
  end
end}

local function parse(r)
  local s = field(r, "size")
  local w = field(r, "words")
  return setmetatable({
    r = r,
    id = strip(field(r, "id")),
    root = strip(field(r, "root")),
    dup = uint(r, "dup"),
    linked = uint(r, "linked"),
    hash = field(r, "hash"),
    size = byte(s, 1) * 256 + byte(s, 2),
    words = byte(w, 1) * 256 + byte(w, 2),
  }, lazy)
end

local function containment(equal, less, more, a, b)
  if equal == 0 or a <= 0 then return 0 end
  local n = equal + less + more
  local lo, hi = 0.0, min(a, b)
  for _ = 1, 40 do
    local x = (lo + hi) / 2
    local g = equal / x + n / (a + b - x)
    if less > 0 then g = g - less / (a - x) end
    if more > 0 then g = g - more / (b - x) end
    if g > 0 then lo = x else hi = x end
  end
  return (lo + hi) / 2 / min(a, b)
end

local function opening(short, long)
  local m, n = min(short.words, L), min(long.words, L)
  if m == 0 then return 0 end
  local hit, sl, ll = 0, short.lead, long.lead
  for i = 0, m - 1 do
    local want = sl[i + 1]
    for j = max(0, i - SLACK), min(n, i + SLACK + 1) - 1 do
      if ll[j + 1] == want then
        hit = hit + 1
        break
      end
    end
  end
  return hit / m
end

-- of n minimum codes of two sketches: how many are equal, smaller in a, larger in a
local function tally(a, b, n)
  local eq, lt, gt = 0, 0, 0
  for k = 1, n do
    local x, y = a[k], b[k]
    if x == y then eq = eq + 1 elseif x < y then lt = lt + 1 else gt = gt + 1 end
  end
  return eq, lt, gt
end

-- whether the two share enough names and numbers for a near-duplicate
local function names_agree(new, old)
  local neq, nlt, ngt = tally(new.names, old.names, NN)
  return neq > 0 and max(neq / (neq + nlt), neq / (neq + ngt)) >= NAMES
end

-- returns kind rank (3 exact, 2 near, 1 excerpt, 0 none) and similarity
local function compare(new, old)
  if new.hash == old.hash then return 3, 1.0 end
  local eq, lt, gt = tally(new.codes, old.codes, NP)
  local sim = eq / NP
  local short, long, less, more
  if new.words <= old.words then short, long, less, more = new, old, lt, gt else short, long, less, more = old, new, gt, lt end
  if short.words < EX_WORDS then return 0, sim end
  if sim >= NEAR and names_agree(new, old) then return 2, sim end
  if short.size <= EX_RATIO * long.size then
    local c = containment(eq, less, more, short.size, long.size)
    local teaser = short.words <= L
    local o = opening(short, long)
    if o >= EXCERPT and (teaser or less == 0) then
      if teaser or eq == 0 then return 1, o end
      return 1, c
    end
    if not teaser and c >= EXCERPT then return 1, c end
    if c >= CONTAINED and names_agree(new, old) then return 2, c end
  end
  return 0, sim
end

-- `new`: the article got its sequence number in this call (the index never judged it before)
local function decision_of(seq, new)
  local r = record(seq)
  local id, dup = strip(field(r, "id")), uint(r, "dup")
  local flag = new and "1" or ""
  if dup == 0 then return {id, seq, "", "", "", "", flag} end
  local root, o = strip(field(r, "root")), record(dup)
  local other = o and strip(field(o, "id")) or root
  return {id, seq, other, KIND[uint(r, "kind")], string.format("%.4f", uint(r, "sim") / 10000), root, flag}
end

-- calls in groups: one redis.call per group of fields instead of one per field
local GROUP = 512
local function grouped(cmd, key, args, per)
  for i = 1, #args, GROUP * per do
    local n = min(#args, i + GROUP * per - 1)
    local r = redis.call(cmd, key, unpack(args, i, n))
    if cmd == "HMGET" then
      for k = 1, #r do buckets[args[i + k - 1]] = r[k] or "" end
    end
  end
end

-- the batch ---------------------------------------------------------------------
-- every bucket the batch looks at, read at once (a split later reads the few it moves)
do
  local want, seen = {}, {}
  for j = 0, (#ARGV - 1) / 3 - 1 do
    local keys = ARGV[4 + 3 * j]
    for p = 1, #keys, 4 do
      local a = addr(u32(keys, p))
      if not seen[a] then
        seen[a] = true
        want[#want + 1] = a
      end
    end
  end
  grouped("HMGET", KEYS[5], want, 1)
end

local out = {}
for j = 0, (#ARGV - 1) / 3 - 1 do
  local id, rec, keys = ARGV[2 + 3 * j], ARGV[3 + 3 * j], ARGV[4 + 3 * j]
  local ident = field(rec, "id")
  local NK = #keys / 4
  local kb, ad = {}, {} -- its bucket keys and their addresses (splits come after its inserts)
  for k = 1, NK do
    kb[k] = sub(keys, 4 * k - 3, 4 * k)
    ad[k] = addr(u32(keys, 4 * k - 3))
  end

  -- the article's own earlier record (a re-delivered or updated article keeps its number)
  local seq, stored = nil, false
  local mine = {}
  find(bucket(ad[NK]), kb[NK], mine)
  for _, s in ipairs(mine) do
    local r = record(s)
    if r and field(r, "id") == ident then seq, stored = s, r end
  end
  local fresh = not seq
  if fresh then seq = redis.call("INCR", KEYS[1]) end

  -- candidates: earlier articles sharing a band or the lead key
  local new = nil -- parsed on the first candidate: most articles have none
  local seen, best_kind, best_sim, best_seq = {}, 0, -1, nil
  local teasers, again = {}, {}
  for k = 1, NK - 1 do
    local cands = {}
    find(bucket(ad[k]), kb[k], cands)
    for _, c in ipairs(cands) do
      if c < seq and not seen[c] then
        seen[c] = true
        local r = record(c)
        if r then
          new = new or parse(rec)
          local old = parse(r)
          local kind, sim = compare(new, old)
          if kind > 0 and (kind > best_kind or (kind == best_kind and (sim > best_sim or (sim == best_sim and c < best_seq)))) then
            best_kind, best_sim, best_seq = kind, sim, c
          end
          if kind == 1 and old.words <= new.words and old.root == old.id and old.linked == 0 then
            teasers[#teasers + 1] = {c, sim}
          elseif old.dup == seq then
            again[#again + 1] = c -- relabelled by this article before: the same verdict again
          end
        end
      end
    end
  end

  -- the decision: its best earlier match and that match's cluster root
  local linked = stored and uint(stored, "linked") or 0
  local root, dup, rank, tt
  if best_seq then
    local br = record(best_seq)
    root = strip(field(br, "root"))
    if root == "" then root = strip(field(br, "id")) end
    dup, rank, tt = best_seq, best_kind, floor(best_sim * 10000 + 0.5)
    if uint(br, "linked") == 0 then write_record(best_seq, with_uint(br, "linked", 1)) end
  elseif stored and uint(stored, "dup") > seq then -- relabelled by a later article: keep that verdict
    root, dup, rank, tt = strip(field(stored, "root")), uint(stored, "dup"), uint(stored, "kind"), uint(stored, "sim")
  else
    root, dup, rank, tt = id, 0, 0, 0
  end
  -- an earlier teaser of this article that is alone joins its cluster
  local joining = {}
  for _, t in ipairs(teasers) do
    if t[1] ~= best_seq then joining[#joining + 1] = t end
  end
  if #joining > 0 then linked = 1 end
  local final = with_id(rec, "root", root)
  final = with_uint(with_uint(with_uint(with_uint(final, "dup", dup), "kind", rank), "sim", tt), "linked", linked)
  if final ~= stored then
    write_record(seq, final)
    for k = 1, NK do insert(ad[k], kb[k], seq, fresh) end
    while entries > LOAD * (2 ^ level + split) do split_one() end
  end
  local changed = {}
  for _, t in ipairs(joining) do
    local r = with_uint(with_id(record(t[1]), "root", root), "dup", seq)
    write_record(t[1], with_uint(with_uint(r, "kind", 1), "sim", floor(t[2] * 10000 + 0.5)))
    changed[#changed + 1] = t[1]
  end
  for _, c in ipairs(again) do changed[#changed + 1] = c end
  table.sort(changed)
  out[#out + 1] = decision_of(seq, fresh)
  for _, c in ipairs(changed) do out[#out + 1] = decision_of(c, false) end
end

-- write back what changed
for c in pairs(dirty_chunks) do
  local ch = chunks[c]
  local parts, blank = {}, string.rep("\0", W)
  for slot = 0, K - 1 do
    local r = ch.put[slot]
    if not r and ch.s then r = sub(ch.s, slot * W + 1, slot * W + W) end
    parts[#parts + 1] = r or blank
  end
  redis.call("HSET", KEYS[4], c, concat(parts))
  redis.call("ZADD", KEYS[3], "GT", now, c)
end
local put, gone = {}, {}
for a in pairs(dirty_buckets) do
  if buckets[a] == "" then
    gone[#gone + 1] = a
  else
    put[#put + 1] = a
    put[#put + 1] = buckets[a]
  end
end
grouped("HSET", KEYS[5], put, 2)
grouped("HDEL", KEYS[5], gone, 1)
redis.call("HSET", KEYS[2], "level", level, "split", split, "entries", entries, "per_chunk", K)
return out
