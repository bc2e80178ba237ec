/**
 * The Redis store's decisions (ADR 21): each is one Lua script, run
 * atomically by Redis, with every key in KEYS (all under one hash tag, so a
 * Redis Cluster keeps them on one shard), the clock from Redis `TIME` (or the
 * caller's, for tests on a fake clock), and only commands Redis 7.0 has.
 *
 * Every script gets the same KEYS (`KEY_NAMES`), ARGV[1] = the clock in ms or
 * '' for Redis `TIME`, ARGV[2] = its arguments as JSON. It answers an array:
 * [result JSON, host, message JSON, host, message JSON, ...]: the messages
 * are for the named hosts (a close to a session's owner, an admission's
 * answer to the host that waits for it), published by the caller on the
 * host's shard channel.
 *
 * State (the names after the prefix `{mcpsb:<namespace>}:`):
 * - cfg     HASH  config (the admission options, JSON), secret (the route secret)
 * - meta    HASH  live, closing, next (slots never used below it), seq (creation order),
 *                 tok (token ids), createdTotal, closedTotal.<reason>, rejectedTotal.<reason>
 * - sess    HASH  slot -> session record JSON {g gen, h host, o owner thread, c client,
 *                 b created, s last seen, st L|C, r close reason, w waiting admission,
 *                 bu busy until, rt/ct rate tokens, q creation order}
 * - free    ZSET  freed slots (score = slot)
 * - gens    HASH  slot -> the generation its next session gets
 * - fifo    ZSET  live slots by creation order;  seen: by last seen;  born: by creation time
 * - closing ZSET  closing slots by when their owner was (last) asked
 * - rate    ZSET  the global creation log (score = ms)
 * - crate   ZSET  per-client creation logs, by member `<client>:<ms>:<token>` (lexicographic);
 *   cratet  ZSET  the same members by time (for trimming clients that went away)
 * - ccount  HASH  client -> sessions held (and admissions waiting);  cheavy: ZSET the same, by count
 * - cfifo   ZSET  `<client>:<order>:<slot>` (lexicographic): a client's sessions, oldest first
 * - hosts   HASH  host index -> advertised URL;  alive: ZSET host index -> liveness deadline (ms)
 * - hsess   ZSET  `<host>:<slot>` (lexicographic): each host's sessions
 * - waits   HASH  `<host>:<epoch>:<seq>` -> an admission waiting for its victim's close (the epoch is
 *                 the host's connection's: a host index taken again never meets a predecessor's)
 *
 * Bounds: every structure holds at most one entry per slot (capacity), per
 * host (255), per client holding a session, or per creation in a rate
 * window; a script looks at most WALK entries of any index per call, and
 * `register` at most the sessions its host lists (256 per call: a host
 * reconciles what it owns page by page, each page a range of slots) plus
 * WALK.
 */

import { createHash } from 'node:crypto';

export const KEY_NAMES = [
  'cfg',
  'meta',
  'sess',
  'free',
  'gens',
  'fifo',
  'seen',
  'born',
  'closing',
  'rate',
  'crate',
  'cratet',
  'ccount',
  'cheavy',
  'cfifo',
  'hosts',
  'alive',
  'hsess',
  'waits',
] as const;

const PRELUDE = `
local K_CFG, K_META, K_SESS, K_FREE, K_GENS, K_FIFO, K_SEEN, K_BORN, K_CLOSING, K_RATE, K_CRATE, K_CRATET, K_CCOUNT, K_CHEAVY, K_CFIFO, K_HOSTS, K_ALIVE, K_HSESS, K_WAITS = unpack(KEYS)
local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
now = math.floor(now)
local a = cjson.decode(ARGV[2])
local raw = redis.call('HGET', K_CFG, 'config')
local cfg = nil
if raw then cfg = cjson.decode(raw) end
local out = { '' }
local MIN_RETRY, NO_DEADLINE, MAX_RETRY, WALK = 1000, 5000, 60000, 256

local function pub(host, msg)
  out[#out + 1] = tostring(host)
  out[#out + 1] = cjson.encode(msg)
end
local function done(result)
  out[1] = cjson.encode(result)
  return out
end
local function num(v) return tonumber(v or '0') or 0 end
local function meta(field, d) return redis.call('HINCRBY', K_META, field, d) end
local function get(slot)
  local v = redis.call('HGET', K_SESS, slot)
  if v then return cjson.decode(v) end
  return nil
end
local function put(slot, r) redis.call('HSET', K_SESS, slot, cjson.encode(r)) end
-- A host is alive while its liveness deadline has not passed (a lapsed host is gone even before a sweep frees its sessions).
local function host_alive(host)
  local d = redis.call('ZSCORE', K_ALIVE, host)
  return d ~= false and tonumber(d) >= now
end
local function hs(host, slot) return string.format('%03d:%08d', host, slot) end
local function pad(n) return string.format('%015d', n) end
local function cf(ck, q, slot) return ck .. ':' .. pad(q) .. ':' .. slot end
local function perclient() return cfg.cmax ~= nil or cfg.crmax ~= nil end
local function zrem_all(key, members)
  for i = 1, #members, 500 do
    redis.call('ZREM', key, unpack(members, i, math.min(#members, i + 499)))
  end
end
local function clamp_retry(ms)
  if ms == nil then return NO_DEADLINE end
  return math.min(MAX_RETRY, math.max(MIN_RETRY, math.ceil(ms)))
end

-- clients ---------------------------------------------------------------------
local function client_add(ck, d)
  if not perclient() then return end
  local n = redis.call('HINCRBY', K_CCOUNT, ck, d)
  if n <= 0 then
    redis.call('HDEL', K_CCOUNT, ck)
    redis.call('ZREM', K_CHEAVY, ck)
  else
    redis.call('ZADD', K_CHEAVY, n, ck)
  end
end

-- rate logs: a creation at t counts while now - t < window -----------------------
local function grate_check()
  if not cfg.rmax then return nil end
  redis.call('ZREMRANGEBYSCORE', K_RATE, '-inf', now - cfg.rwin)
  if redis.call('ZCARD', K_RATE) < cfg.rmax then return nil end
  local oldest = redis.call('ZRANGE', K_RATE, 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + cfg.rwin - now
end
local function grate_spend()
  if not cfg.rmax then return nil end
  local m = tostring(now) .. ':' .. meta('tok', 1)
  redis.call('ZADD', K_RATE, now, m)
  return m
end
local function crate_check(ck)
  if not cfg.crmax then return nil end
  local lo, hi = '[' .. ck .. ':', '[' .. ck .. ';'
  local old = redis.call('ZRANGEBYLEX', K_CRATE, lo, '(' .. ck .. ':' .. pad(now - cfg.crwin + 1))
  if #old > 0 then
    zrem_all(K_CRATE, old)
    zrem_all(K_CRATET, old)
  end
  if redis.call('ZLEXCOUNT', K_CRATE, lo, hi) < cfg.crmax then return nil end
  local first = redis.call('ZRANGEBYLEX', K_CRATE, lo, hi, 'LIMIT', 0, 1)[1]
  return tonumber(string.sub(first, #ck + 2, #ck + 16)) + cfg.crwin - now
end
local function crate_spend(ck)
  if not cfg.crmax then return nil end
  local m = ck .. ':' .. pad(now) .. ':' .. meta('tok', 1)
  redis.call('ZADD', K_CRATE, 0, m)
  redis.call('ZADD', K_CRATET, now, m)
  return m
end
local function refund(rt, ct)
  if rt then redis.call('ZREM', K_RATE, rt) end
  if ct then
    redis.call('ZREM', K_CRATE, ct)
    redis.call('ZREM', K_CRATET, ct)
  end
end

-- sessions --------------------------------------------------------------------
local function link_live(slot, r)
  redis.call('ZADD', K_FIFO, r.q, slot)
  redis.call('ZADD', K_SEEN, r.s, slot)
  if cfg.life > 0 then redis.call('ZADD', K_BORN, r.b, slot) end
end
local function unlink_live(slot)
  redis.call('ZREM', K_FIFO, slot)
  redis.call('ZREM', K_SEEN, slot)
  redis.call('ZREM', K_BORN, slot)
end
-- Publishes a session live in \`slot\` (taken by the caller); the client's count was added by the caller.
local function allocate(slot, host, owner, ck, rt, ct, born, seen, gen)
  gen = gen or num(redis.call('HGET', K_GENS, slot))
  if gen == 0 then gen = 1 end
  local r = { g = gen, h = host, o = owner, c = ck, b = born or now, s = seen or now, st = 'L', q = meta('seq', 1), rt = rt, ct = ct }
  put(slot, r)
  link_live(slot, r)
  if perclient() then redis.call('ZADD', K_CFIFO, 0, cf(ck, r.q, slot)) end
  redis.call('ZADD', K_HSESS, 0, hs(host, slot))
  meta('live', 1)
  return gen
end
local function take_slot()
  local s = redis.call('ZPOPMIN', K_FREE)
  if s[1] then return tonumber(s[1]) end
  local n = meta('next', 1) - 1
  if n >= cfg.max then
    meta('next', -1)
    return nil
  end
  return n
end
local function begin_close(slot, r, reason, hint)
  r.st = 'C'
  r.r = reason
  put(slot, r)
  unlink_live(slot)
  redis.call('ZADD', K_CLOSING, now, slot)
  meta('live', -1)
  meta('closing', 1)
  local msg = { type = 'close', slot = tonumber(slot), gen = r.g, reason = reason }
  if hint then msg.seenAgoMs = math.max(0, now - r.s) end
  pub(r.h, msg)
end

local walk_busy = nil
local function evictable(r)
  if r == nil or r.st ~= 'L' then return false end
  if r.bu and r.bu > now then
    if walk_busy == nil or r.bu < walk_busy then walk_busy = r.bu end
    return false
  end
  return true
end
local function pick_from(slots)
  for _, slot in ipairs(slots) do
    local r = get(slot)
    if evictable(r) then
      begin_close(slot, r, 'evicted', cfg.evict == 'idlest')
      return tonumber(slot)
    end
  end
  return nil
end
local function client_slots(ck)
  local ms = redis.call('ZRANGEBYLEX', K_CFIFO, '[' .. ck .. ':', '[' .. ck .. ';', 'LIMIT', 0, WALK)
  local slots = {}
  for i, m in ipairs(ms) do slots[i] = string.match(m, ':(%d+)$') end
  if cfg.evict == 'idlest' then
    local seen = {}
    for _, s in ipairs(slots) do
      local r = get(s)
      seen[s] = r and r.s or 0
    end
    table.sort(slots, function(x, y) return seen[x] < seen[y] end)
  end
  return slots
end
local function pick_victim()
  if cfg.evict == 'none' then return nil end
  if perclient() then
    local clients = redis.call('ZREVRANGE', K_CHEAVY, 0, 63)
    for _, ck in ipairs(clients) do
      local s = pick_from(client_slots(ck))
      if s then return s end
    end
    return nil
  end
  local key = K_FIFO
  if cfg.evict == 'idlest' then key = K_SEEN end
  return pick_from(redis.call('ZRANGE', key, 0, WALK - 1))
end
local function first_unclaimed_closing(slots)
  for _, slot in ipairs(slots) do
    local r = get(slot)
    if r and r.st == 'C' and not r.w then return tonumber(slot) end
  end
  return nil
end
local function full_retry()
  if num(redis.call('HGET', K_META, 'closing')) > redis.call('HLEN', K_WAITS) then return MIN_RETRY end
  local soonest = nil
  local function consider(t)
    if t ~= nil and (soonest == nil or t < soonest) then soonest = t end
  end
  if walk_busy then consider(walk_busy - now) end
  if cfg.idle > 0 then
    local f = redis.call('ZRANGE', K_SEEN, 0, 0, 'WITHSCORES')
    if f[2] then consider(tonumber(f[2]) + cfg.idle - now) end
  end
  if cfg.life > 0 then
    local f = redis.call('ZRANGE', K_BORN, 0, 0, 'WITHSCORES')
    if f[2] then consider(tonumber(f[2]) + cfg.life - now) end
  end
  return clamp_retry(soonest)
end
local function client_retry(ck)
  local soonest = nil
  local function consider(t)
    if soonest == nil or t < soonest then soonest = t end
  end
  for _, slot in ipairs(client_slots(ck)) do
    local r = get(slot)
    if r then
      if r.st == 'C' then return MIN_RETRY end
      if cfg.life > 0 then consider(r.b + cfg.life - now) end
      if r.bu and r.bu > now then consider(r.bu - now)
      elseif cfg.idle > 0 then consider(r.s + cfg.idle - now) end
    end
  end
  return clamp_retry(soonest)
end

-- Expiry: lifetime (forced) and idle (the owner may veto), at most WALK of each.
local function expire_due()
  if cfg.life > 0 then
    for _, slot in ipairs(redis.call('ZRANGEBYSCORE', K_BORN, '-inf', now - cfg.life, 'LIMIT', 0, WALK)) do
      local r = get(slot)
      if r and r.st == 'L' then begin_close(slot, r, 'lifetime', false) else redis.call('ZREM', K_BORN, slot) end
    end
  end
  if cfg.idle > 0 then
    for _, slot in ipairs(redis.call('ZRANGEBYSCORE', K_SEEN, '-inf', now - cfg.idle, 'LIMIT', 0, WALK)) do
      local r = get(slot)
      if r == nil or r.st ~= 'L' then redis.call('ZREM', K_SEEN, slot)
      elseif not (r.bu and r.bu > now) then begin_close(slot, r, 'idle', false) end
    end
  end
end

-- Frees a slot: the session's close is final. The slot goes to the admission waiting for it, or back.
local grant
local function free_slot(slot, r, reason, refunded)
  local final = reason
  if r.st == 'C' and r.r then final = r.r end
  unlink_live(slot)
  redis.call('ZREM', K_CLOSING, slot)
  if perclient() then redis.call('ZREM', K_CFIFO, cf(r.c, r.q, slot)) end
  redis.call('ZREM', K_HSESS, hs(r.h, slot))
  if r.st == 'C' then meta('closing', -1) else meta('live', -1) end
  meta('closedTotal.' .. final, 1)
  if refunded then refund(r.rt, r.ct) end
  client_add(r.c, -1)
  local gen = r.g + 1
  if gen > 4294967295 then gen = 1 end
  redis.call('HSET', K_GENS, slot, gen)
  redis.call('HDEL', K_SESS, slot)
  if r.w then grant(tonumber(slot), r.w) else redis.call('ZADD', K_FREE, slot, slot) end
  return final
end

local function release_waiter(w)
  refund(w.rt, w.ct)
  client_add(w.c, -1)
end
local function refuse_waiter(w, reason, retry)
  release_waiter(w)
  meta('rejectedTotal.' .. reason, 1)
  pub(w.h, { type = 'refused', e = w.e, seq = w.seq, reason = reason, retryAfterMs = clamp_retry(retry) })
end

-- The creation happens now: the waiting admission's tokens move to now (or it is refused).
grant = function(slot, id)
  local raw_w = redis.call('HGET', K_WAITS, id)
  if not raw_w then
    redis.call('ZADD', K_FREE, slot, slot)
    return
  end
  redis.call('HDEL', K_WAITS, id)
  local w = cjson.decode(raw_w)
  if not host_alive(w.h) then
    -- Its host is gone: nobody would build the session (its tokens and its client's count go back).
    redis.call('ZADD', K_FREE, slot, slot)
    release_waiter(w)
    return
  end
  if w.rt then
    local had = redis.call('ZREM', K_RATE, w.rt)
    w.rt = nil
    local retry = nil
    if had == 0 then retry = grate_check() end
    if retry then
      redis.call('ZADD', K_FREE, slot, slot)
      return refuse_waiter(w, 'rate_limited', retry)
    end
    w.rt = grate_spend()
  end
  if w.ct then
    local had = redis.call('ZREM', K_CRATE, w.ct)
    redis.call('ZREM', K_CRATET, w.ct)
    w.ct = nil
    local retry = nil
    if had == 0 then retry = crate_check(w.c) end
    if retry then
      redis.call('ZADD', K_FREE, slot, slot)
      return refuse_waiter(w, 'client_rate_limited', retry)
    end
    w.ct = crate_spend(w.c)
  end
  local gen = allocate(slot, w.h, w.o, w.c, w.rt, w.ct)
  meta('createdTotal', 1)
  pub(w.h, { type = 'admitted', e = w.e, seq = w.seq, slot = slot, gen = gen })
end

-- A waiting admission whose victim was kept (vetoed) looks for another, or is refused.
local function rebind(id)
  local raw_w = redis.call('HGET', K_WAITS, id)
  if not raw_w then return end
  local w = cjson.decode(raw_w)
  if not host_alive(w.h) then
    redis.call('HDEL', K_WAITS, id)
    release_waiter(w)
    return
  end
  local victim = nil
  if cfg.evict ~= 'none' then
    if w.sc == 'client' then victim = pick_from(client_slots(w.c)) else victim = pick_victim() end
  end
  if victim then
    w.v = victim
    redis.call('HSET', K_WAITS, id, cjson.encode(w))
    local r = get(victim)
    r.w = id
    put(victim, r)
    return
  end
  redis.call('HDEL', K_WAITS, id)
  if w.sc == 'client' then refuse_waiter(w, 'client_full', client_retry(w.c))
  else refuse_waiter(w, 'full', full_retry()) end
end

`;

const OPS = {
  /** A host joins: checks (or sets) the namespace's config, takes a host index, answers the welcome. */
  hello: `
if raw and raw ~= a.config then return done({ t = 'mismatch', config = raw }) end
if not raw then
  redis.call('HSET', K_CFG, 'config', a.config, 'secret', a.secret)
  cfg = cjson.decode(a.config)
end
local function unused(i)
  if redis.call('ZSCORE', K_ALIVE, i) then return false end
  local s = redis.call('ZRANGEBYLEX', K_HSESS, '[' .. string.format('%03d:', i), '(' .. string.format('%03d;', i), 'LIMIT', 0, 1)
  return #s == 0
end
local index = nil
if a.want then
  if unused(a.want) or redis.call('HGET', K_HOSTS, a.want) == a.url then index = a.want
  else return done({ t = 'taken' }) end
else
  for i = 1, 255 do
    if unused(i) then index = i break end
  end
end
if not index then return done({ t = 'full' }) end
redis.call('ZADD', K_ALIVE, now + a.ttl, index)
redis.call('HSET', K_HOSTS, index, a.url)
return done({ t = 'welcome', process = index, capacity = cfg.max, idleTimeoutMs = cfg.idle, maxLifetimeMs = cfg.life,
  busyTimeoutMs = cfg.busy, routes = '', routeSecret = redis.call('HGET', K_CFG, 'secret'), hosts = redis.call('HGETALL', K_HOSTS) })
`,
  /** A host is alive: its liveness moves on; answers every host's URL. 'gone' when Redis forgot it. */
  heartbeat: `
if not cfg or redis.call('HGET', K_HOSTS, a.h) ~= a.url or not host_alive(a.h) then return done({ t = 'gone' }) end
redis.call('ZADD', K_ALIVE, now + a.ttl, a.h)
return done({ t = 'ok', hosts = redis.call('HGETALL', K_HOSTS) })
`,
  /** An admission, in the fixed order: client rate, global rate, client cap, global cap. */
  admit: `
if not cfg or not host_alive(a.h) then return done({ t = 'gone' }) end
local ck, host = a.c, a.h
local function refused(reason, retry)
  meta('rejectedTotal.' .. reason, 1)
  return done({ t = 'refused', reason = reason, retryAfterMs = clamp_retry(retry) })
end
local function wait(slot, scope)
  local id = host .. ':' .. a.e .. ':' .. a.seq
  local w = { h = host, e = a.e, seq = a.seq, c = ck, o = a.o, rt = grate_spend(), ct = crate_spend(ck), sc = scope, v = slot }
  client_add(ck, 1)
  redis.call('HSET', K_WAITS, id, cjson.encode(w))
  local r = get(slot)
  r.w = id
  put(slot, r)
  return done({ t = 'wait' })
end
local retry = crate_check(ck)
if retry then return refused('client_rate_limited', retry) end
retry = grate_check()
if retry then return refused('rate_limited', retry) end
if cfg.cmax and num(redis.call('HGET', K_CCOUNT, ck)) >= cfg.cmax then
  expire_due()
  local mine = client_slots(ck)
  local closing = first_unclaimed_closing(mine)
  if closing then return wait(closing, 'client') end
  local victim = nil
  if cfg.evict ~= 'none' then victim = pick_from(mine) end
  if victim then return wait(victim, 'client') end
  return refused('client_full', client_retry(ck))
end
local occupied = num(redis.call('HGET', K_META, 'live')) + num(redis.call('HGET', K_META, 'closing'))
if occupied < cfg.max then
  local slot = take_slot()
  if slot then
    local rt, ct = grate_spend(), crate_spend(ck)
    client_add(ck, 1)
    local gen = allocate(slot, host, a.o, ck, rt, ct)
    meta('createdTotal', 1)
    return done({ t = 'admitted', slot = slot, gen = gen })
  end
end
expire_due()
local closing = first_unclaimed_closing(redis.call('ZRANGE', K_CLOSING, 0, WALK - 1))
if closing then return wait(closing, 'global') end
local victim = pick_victim()
if victim then return wait(victim, 'global') end
return refused('full', full_retry())
`,
  /** The owner closed a session's transport: the slot is freed (or granted to the admission waiting for it). */
  closed: `
if not cfg then return done({ t = 'gone' }) end
local r = get(a.slot)
if r == nil or r.g ~= a.gen or r.h ~= a.h then return done({ t = 'ok' }) end
free_slot(a.slot, r, a.reason, a.refund)
return done({ t = 'ok' })
`,
  /** The owner will not close it now (busy, or active since): back to live; its waiting admission looks again. */
  veto: `
if not cfg then return done({ t = 'gone' }) end
local r = get(a.slot)
if r == nil or r.g ~= a.gen or r.h ~= a.h or r.st ~= 'C' then return done({ t = 'ok' }) end
r.st = 'L'
r.r = nil
r.s = math.max(r.s, now - a.seenAgoMs)
if a.busyForMs then r.bu = now - a.busyForMs + cfg.busy else r.bu = nil end
local id = r.w
r.w = nil
put(a.slot, r)
link_live(a.slot, r)
redis.call('ZREM', K_CLOSING, a.slot)
meta('live', 1)
meta('closing', -1)
if id then rebind(id) end
return done({ t = 'ok' })
`,
  /** An admission's wait ran out (closeTimeoutMs): it is refused and gives its tokens back, unless decided already. */
  abandon: `
if not cfg then return done({ t = 'gone' }) end
local id = a.h .. ':' .. a.e .. ':' .. a.seq
local raw_w = redis.call('HGET', K_WAITS, id)
if not raw_w then return done({ t = 'gone' }) end
redis.call('HDEL', K_WAITS, id)
local w = cjson.decode(raw_w)
local r = get(w.v)
if r and r.w == id then
  r.w = nil
  put(w.v, r)
end
release_waiter(w)
local reason = 'full'
if r and not host_alive(r.h) then reason = 'owner_gone' end
meta('rejectedTotal.' .. reason, 1)
return done({ t = 'refused', reason = reason, retryAfterMs = MIN_RETRY })
`,
  /** What owners saw: per session, how long ago it was active, and whether a request is in flight. */
  seen: `
if not cfg then return done({ t = 'gone' }) end
for _, e in ipairs(a.entries) do
  local r = get(e[1])
  if r and r.g == e[2] and r.h == a.h and r.st == 'L' then
    r.s = math.max(r.s, now - e[3])
    if e[4] == 0 then r.bu = nil end
    put(e[1], r)
    redis.call('ZADD', K_SEEN, r.s, e[1])
  end
end
return done({ t = 'ok' })
`,
  /**
   * A host tells what it owns (after Redis lost it, or as the periodic
   * reconcile with \`complete\`): unknown sessions are taken over (no rate
   * token: that history is lost), those that cannot be are closed
   * (evicted); with \`complete\`, the host's sessions Redis holds that it did
   * not list (and older than \`grace\` ms) are freed (error).
   */
  register: `
if not cfg or not host_alive(a.h) then return done({ t = 'gone' }) end
local listed = {}
for _, s in ipairs(a.sessions) do
  local key = tostring(s.slot)
  listed[key] = true
  local r = get(key)
  if r then
    if r.h == a.h and r.g == s.gen then
      if r.st == 'L' then
        r.s = math.max(r.s, now - s.seenAgoMs)
        put(key, r)
        redis.call('ZADD', K_SEEN, r.s, key)
      end
    else
      pub(a.h, { type = 'close', slot = s.slot, gen = s.gen, reason = 'evicted' })
    end
  else
    local occupied = num(redis.call('HGET', K_META, 'live')) + num(redis.call('HGET', K_META, 'closing'))
    local next = num(redis.call('HGET', K_META, 'next'))
    if s.slot >= cfg.max or occupied >= cfg.max then
      pub(a.h, { type = 'close', slot = s.slot, gen = s.gen, reason = 'evicted' })
    else
      if s.slot >= next then
        for i = next, s.slot - 1 do redis.call('ZADD', K_FREE, i, i) end
        redis.call('HSET', K_META, 'next', s.slot + 1)
      else
        redis.call('ZREM', K_FREE, key)
      end
      client_add(s.c, 1)
      allocate(s.slot, a.h, s.o, s.c, nil, nil, now - s.createdAgoMs, now - s.seenAgoMs, s.gen)
    end
  end
end
if a.complete then
  -- This page is all the host owns in slots from..to (to absent: to the end); a ghost walk past
  -- what it lists is bounded too (more ghosts wait for the next reconcile).
  local hi = '(' .. string.format('%03d;', a.h)
  if a.to then hi = '[' .. hs(a.h, a.to) end
  for _, m in ipairs(redis.call('ZRANGEBYLEX', K_HSESS, '[' .. hs(a.h, a.from), hi, 'LIMIT', 0, #a.sessions + WALK)) do
    local slot = tostring(tonumber(string.sub(m, 5)))
    if not listed[slot] then
      local r = get(slot)
      if r == nil then redis.call('ZREM', K_HSESS, m)
      elseif r.b < now - a.grace then free_slot(slot, r, 'error', false) end
    end
  end
end
return done({ t = 'ok' })
`,
  /**
   * Housekeeping, each part bounded: sessions of hosts whose liveness lapsed
   * are freed (error); expired sessions are asked closed; closes not
   * confirmed within 2 s are asked again; client rate logs are trimmed.
   */
  sweep: `
if not cfg then return done({ t = 'gone' }) end
for _, d in ipairs(redis.call('ZRANGEBYSCORE', K_ALIVE, '-inf', '(' .. now, 'LIMIT', 0, 8)) do
  local p = string.format('%03d', tonumber(d))
  local ms = redis.call('ZRANGEBYLEX', K_HSESS, '[' .. p .. ':', '(' .. p .. ';', 'LIMIT', 0, WALK)
  for _, m in ipairs(ms) do
    local slot = tostring(tonumber(string.sub(m, 5)))
    local r = get(slot)
    if r then free_slot(slot, r, 'error', false) else redis.call('ZREM', K_HSESS, m) end
  end
  if #ms < WALK then
    redis.call('ZREM', K_ALIVE, d)
    redis.call('HDEL', K_HOSTS, d)
  end
end
expire_due()
for _, slot in ipairs(redis.call('ZRANGEBYSCORE', K_CLOSING, '-inf', now - 2000, 'LIMIT', 0, WALK)) do
  local r = get(slot)
  if r then
    pub(r.h, { type = 'close', slot = tonumber(slot), gen = r.g, reason = r.r })
    redis.call('ZADD', K_CLOSING, now, slot)
  else
    redis.call('ZREM', K_CLOSING, slot)
  end
end
if cfg.crmax then
  local old = redis.call('ZRANGEBYSCORE', K_CRATET, '-inf', now - cfg.crwin, 'LIMIT', 0, WALK)
  if #old > 0 then
    zrem_all(K_CRATE, old)
    zrem_all(K_CRATET, old)
  end
end
return done({ t = 'ok' })
`,
  /** Counts, flat (the same names as the host authority's). */
  stats: `
if not cfg then return done({ t = 'gone' }) end
local m = redis.call('HGETALL', K_META)
local s = {}
for i = 1, #m, 2 do s[m[i]] = tonumber(m[i + 1]) end
s.occupied = (s.live or 0) + (s.closing or 0)
s.fifoLength = redis.call('ZCARD', K_FIFO)
s.waiting = redis.call('HLEN', K_WAITS)
s.rateWindowCount = 0
if cfg.rmax then s.rateWindowCount = redis.call('ZCOUNT', K_RATE, '(' .. (now - cfg.rwin), '+inf') end
s.next, s.seq, s.tok = nil, nil, nil
return done({ t = 'stats', stats = s })
`,
  /** A host leaves: forgotten at once if it holds nothing (else its liveness lapses). */
  bye: `
if not cfg then return done({ t = 'ok' }) end
local s = redis.call('ZRANGEBYLEX', K_HSESS, '[' .. string.format('%03d:', a.h), '(' .. string.format('%03d;', a.h), 'LIMIT', 0, 1)
if #s == 0 and redis.call('HGET', K_HOSTS, a.h) == a.url then
  redis.call('ZREM', K_ALIVE, a.h)
  redis.call('HDEL', K_HOSTS, a.h)
end
return done({ t = 'ok' })
`,
} as const;

export type ScriptName = keyof typeof OPS;

/** Each script's full source: the shared prelude, then its body. */
export const SCRIPTS: Readonly<Record<ScriptName, string>> = Object.fromEntries(
  Object.entries(OPS).map(([name, body]) => [name, PRELUDE + body]),
) as Record<ScriptName, string>;

/**
 * Each script's SHA1, as Redis names it in EVALSHA. Computed here rather
 * than asked of Redis (`SCRIPT LOAD`), which on a Redis Cluster would load
 * it on whichever node the client picks for a command without keys.
 */
export const SCRIPT_SHAS: Readonly<Record<ScriptName, string>> = Object.fromEntries(
  Object.entries(SCRIPTS).map(([name, source]) => [name, createHash('sha1').update(source).digest('hex')]),
) as Record<ScriptName, string>;
