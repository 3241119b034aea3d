--- bearer.ratelimit: "at most `requests` per `per` seconds", by waiting.
--
-- One limiter, one rule, whatever keeps its slots. acquire() books the
-- earliest start that keeps every window of `per` seconds at `requests`
-- starts or fewer, with the starts of one window spaced a margin more
-- than `per` (5 % of `per`, at most 1 s), then sleeps until it. The
-- margin is there because the API counts from when a request arrives and
-- the limiter from when it let it go: loopback jitter alone puts two
-- arrivals closer than two releases, and the API answers 429.
-- Booking before sleeping keeps the limit when several callers share one
-- limiter and sleep concurrently (coroutines in nginx): each one already
-- holds its own slot.
--
-- Where the slots live is the store's business: a table of this process
-- (default), or a store shared wider (bearer.ngx: every worker of an
-- nginx through the shared dict). A store has one method,
-- `update(fn)`: it runs fn(slots) atomically over its slots and returns
-- what fn returns; a store shared between processes also brings the
-- `clock` they share. A store on another machine (bearer.redis) cannot
-- run fn there: it has `book(requests, per, margin)` instead, the same
-- rule run by the server on the server's clock, which may fail (nil, err).
-- Such a store's `on_store_error = "local"` makes this limiter book on its
-- `fallback` (the per-host store; this process's table without one) while
-- the server fails, saying so once through its `warn`; otherwise acquire
-- returns the error. Anything with an acquire() method can stand in for a
-- limiter.
local host = require "bearer.host"

--- Options of `bearer.ratelimit{...}`.
---@class bearer.RateLimitOptions
---@field requests integer at most this many starts ...
---@field per number ... in any window of this many seconds (spaced a margin more)
---@field clock (fun(): number)|nil default: monotonic
---@field sleep (fun(seconds: number))|nil default: the host's
---@field store table|nil where the slots live (an object with `update(fn)`)

---@class bearer.ratelimit
local M = {}
--- A limiter: any object with `acquire()` can stand in for one.
---@class bearer.Limiter
local Limiter = {}
Limiter.__index = Limiter

local function positive(v) return type(v) == "number" and v > 0 and v == v and v < math.huge end

--- The spacing added to `per` (seconds).
---@param per number
---@return number
function M.margin(per) return math.min(0.05 * per, 1) end

local LocalStore = {}
LocalStore.__index = LocalStore
--- Runs `fn` on the slots (this process only).
---@param fn fun(slots: table): number
---@return number
function LocalStore:update(fn) return fn(self.slots) end

--- bearer.ratelimit.new{ requests = N, per = seconds [, clock =, sleep =, store = ] }
---@param opts bearer.RateLimitOptions
---@return bearer.Limiter
function M.new(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'ratelimit' (table expected, got " .. type(opts) .. ")", 2)
  end
  if not (positive(opts.requests) and opts.requests % 1 == 0) then
    error("bad option 'requests' to 'ratelimit' (positive integer expected)", 2)
  end
  if not positive(opts.per) then
    error("bad option 'per' to 'ratelimit' (positive number of seconds expected)", 2)
  end
  for _, name in ipairs{ "clock", "sleep" } do
    if opts[name] ~= nil and type(opts[name]) ~= "function" then
      error(("bad option '%s' to 'ratelimit' (function expected, got %s)")
            :format(name, type(opts[name])), 2)
    end
  end
  local store = opts.store
  if store ~= nil and not (type(store) == "table" and (type(store.update) == "function"
                                                       or type(store.book) == "function")) then
    error("bad option 'store' to 'ratelimit' (table with an update or book method expected)", 2)
  end
  local default = host.current()
  return setmetatable({
    requests = opts.requests,
    per = opts.per,
    margin = M.margin(opts.per),
    clock = opts.clock or (store and store.clock) or default.clock,
    sleep = opts.sleep or default.sleep,
    store = store or setmetatable({ slots = {} }, LocalStore),
  }, Limiter)
end

-- The booking rule: appends to `slots` (ascending start times, at most
-- `requests` kept) the earliest start at or after `now` that keeps every
-- window at `requests` starts or fewer, spaced by the margin; returns it.
local function book(slots, now, requests, per, margin)
  local start = now
  if #slots >= requests then
    start = math.max(now, slots[#slots - requests + 1] + per + margin)
  end
  slots[#slots + 1] = start
  while #slots > requests do table.remove(slots, 1) end
  return start
end

-- A store of the server's (book) that failed: the error, or the per-host
-- store to book on instead (on_store_error = "local").
local function fall_back(self, err)
  local store = self.store
  if store.on_store_error ~= "local" then return nil, err end
  if not self.fallback then
    self.fallback = store.fallback or setmetatable({ slots = {} }, LocalStore)
    store.warn(("rate limit '%s': %s; this host keeps the limit alone while the store fails")
               :format(store.addr and store.addr.label or "store", err.message))
  end
  return self.fallback
end

--- Books the next slot; returns the seconds it will wait, without waiting
-- (nil, err when a shared store fails: see the file's comment).
---@return number|nil, table|nil
function Limiter:reserve()
  local store = self.store
  if store.book then
    local wait, err = store:book(self.requests, self.per, self.margin)
    if wait then return wait end
    store, err = fall_back(self, err)
    if not store then return nil, err end
  end
  local now = self.clock()
  return store:update(function(slots)
    return book(slots, now, self.requests, self.per, self.margin)
  end) - now
end

--- Waits for the next slot (through the limiter's sleep); returns the wait,
-- or nil, err.
---@return number|nil, table|nil
function Limiter:acquire()
  local wait, err = self:reserve()
  if not wait then return nil, err end
  if wait > 0 then self.sleep(wait) end
  return wait
end

--- Checks a `store` / `on_store_error` pair of options (a redis:// URL or
-- nil; "error", "local" or nil); raises at `level`.
---@param store string|nil
---@param on_store_error "error"|"local"|nil
---@param fname string
---@param level integer
function M.check_store_options(store, on_store_error, fname, level)
  if store ~= nil then require("bearer.redis").check_url(store, "store", fname, level + 1) end
  if on_store_error ~= nil and on_store_error ~= "error" and on_store_error ~= "local" then
    error(("bad option 'on_store_error' to '%s' (\"error\" or \"local\" expected)"):format(fname),
          level + 1)
  end
end

--- A limiter from a client's `rate_limit` option on host `h`: a spec table
-- `{ requests =, per = [, store = "redis://…", on_store_error = ] }` or an
-- object with acquire(). `name` says which clients share the slots where
-- the store is shared (the same base URL and key); `timeout` bounds a
-- store's every command (the client's connect timeout).
---@param value table
---@param h bearer.Host
---@param name string
---@param timeout number|nil
---@return table|nil limiter
function M.from_option(value, h, name, timeout)
  if value == nil then return nil end
  if type(value) == "table" and type(value.acquire) == "function" then return value end
  if type(value) ~= "table" then
    error("bad option 'rate_limit' to 'client' (table expected, got " .. type(value) .. ")", 3)
  end
  M.check_store_options(value.store, value.on_store_error, "client", 3)
  local store_opts = { url = value.store, on_store_error = value.on_store_error, timeout = timeout }
  local store = (value.store or not value.clock) and h.store(name, value.per, store_opts) or nil
  return M.new{ requests = value.requests, per = value.per,
                clock = value.clock or (store and store.clock) or h.clock,
                sleep = value.sleep or h.sleep, store = store }
end

return M
