--- bearer.ngx.limiter: the rate limit of bearer.ratelimit, kept in a
-- lua_shared_dict so that every worker process of an nginx shares it.
--
-- The slots (start times) live in the dict under the limiter's name; a
-- short lock (dict:add, which only one worker can win) makes each booking
-- atomic. Booking before sleeping keeps the limit however many requests of
-- however many workers wait at once.
local ratelimit = require "bearer.ratelimit"

local M = {}
local Limiter = {}
Limiter.__index = Limiter

local LOCK_TTL = 2   -- seconds: a worker that dies holding the lock frees it

-- A booked start and the moment the API sees the request differ by the
-- timer's and the thread pool's latency, which varies between workers by
-- some milliseconds; spacing slots a little more (5 % of `per`, at most
-- 1 s) keeps the limit as the API counts it.
local function default_margin(per) return math.min(0.05 * per, 1) end

--- bearer.ngx.limiter{ name =, requests =, per = [, dict =, margin = ] }
function M.new(opts)
  if type(opts) ~= "table" or type(opts.name) ~= "string" then
    error("bad argument #1 to 'limiter' (table with a string 'name' expected)", 2)
  end
  ratelimit.new{ requests = opts.requests, per = opts.per }   -- same checks
  local dict_name = opts.dict or require("bearer.ngx").dict
  local dict = ngx.shared[dict_name]
  if not dict then
    error(("bearer: lua_shared_dict '%s' is missing (nginx.conf: lua_shared_dict %s 1m;)")
          :format(dict_name, dict_name), 2)
  end
  if opts.margin ~= nil and not (type(opts.margin) == "number" and opts.margin >= 0) then
    error("bad option 'margin' to 'limiter' (non-negative number of seconds expected)", 2)
  end
  return setmetatable({ dict = dict, key = "bearer:rl:" .. opts.name,
                        requests = opts.requests, per = opts.per,
                        margin = opts.margin or default_margin(opts.per) }, Limiter)
end

local function decode(s)
  local slots = {}
  for n in (s or ""):gmatch("[^,]+") do slots[#slots + 1] = tonumber(n) end
  return slots
end

--- Books the next slot for this nginx; returns the seconds to wait.
function Limiter:reserve()
  local sleep = require("bearer.ngx").sleep
  local lock = self.key .. ":lock"
  while not self.dict:add(lock, true, LOCK_TTL) do sleep(0.001) end
  ngx.update_time()
  local now = ngx.now()
  local slots = decode(self.dict:get(self.key))
  local start = ratelimit.book(slots, now, self.requests, self.per, self.margin)
  self.dict:set(self.key, table.concat(slots, ","), self.per + (start - now) + 1)
  self.dict:delete(lock)
  return start - now
end

function Limiter:acquire()
  local wait = self:reserve()
  if wait > 0 then require("bearer.ngx").sleep(wait) end
  return wait
end

return M
