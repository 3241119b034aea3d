--- bearer.ngx.limiter: a rate-limit store in a lua_shared_dict, so that
-- every worker process of an nginx shares one bearer.ratelimit limiter.
--
-- The rule (booking, margin) is bearer.ratelimit's; this file only keeps
-- the slots: under the limiter's name in the dict, booked under a short
-- lock (dict:add, which only one worker can win), timed by ngx.now (the
-- clock all workers share).
local ratelimit = require "bearer.ratelimit"

local M = {}
local Store = {}
Store.__index = Store

local LOCK_TTL = 2   -- seconds: a worker that dies holding the lock frees it

local function decode(s)
  local slots = {}
  for n in (s or ""):gmatch("[^,]+") do slots[#slots + 1] = tonumber(n) end
  return slots
end

local function now()
  ngx.update_time()
  return ngx.now()
end

--- A store named `name` in dict `dict`; nil when the dict is missing.
---@param name string
---@param dict_name string
---@param per number
---@return table|nil store
function M.store(name, dict_name, per)
  local dict = ngx.shared[dict_name]
  if not dict then return nil end
  return setmetatable({ dict = dict, key = "bearer:rl:" .. name, per = per, clock = now }, Store)
end

--- Runs `fn` on the slots under the dict's lock; the slots go back to the dict.
---@param fn fun(slots: table): number
---@return number
function Store:update(fn)
  local sleep = require("bearer.ngx").sleep
  local lock = self.key .. ":lock"
  while not self.dict:add(lock, true, LOCK_TTL) do sleep(0.001) end
  local slots = decode(self.dict:get(self.key))
  local ok, start = pcall(fn, slots)
  if ok then
    -- kept while any slot can still matter: the last one plus a window
    local ttl = (self.per or 0) + 2 + math.max(0, (slots[#slots] or 0) - now())
    self.dict:set(self.key, table.concat(slots, ","), ttl)
  end
  self.dict:delete(lock)
  if not ok then error(start, 0) end
  return start
end

--- store:claim(id, ttl, token) -> true (ours), false (another's): the
-- first add wins; its holder wins it again (bearer.redis's rule).
---@param id string
---@param ttl number
---@param token string
---@return boolean
function Store:claim(id, ttl, token)
  local key = self.key .. ":claim:" .. id
  local added, err = self.dict:add(key, token, ttl)
  if added then return true end
  if err ~= "exists" then
    return nil, require("bearer.error").new{ kind = "connection", code = "store_unavailable",
      message = "lua_shared_dict refused a claim: " .. tostring(err) }
  end
  return self.dict:get(key) == token
end

--- bearer.ngx.limiter{ name =, requests =, per = [, dict = ] }: a limiter
-- every worker shares.
---@param opts { name: string, requests: integer, per: number, dict: string|nil }
---@return bearer.Limiter
function M.new(opts)
  if type(opts) ~= "table" or type(opts.name) ~= "string" then
    error("bad argument #1 to 'limiter' (table with a string 'name' expected)", 2)
  end
  if opts.margin ~= nil then
    error("bad option 'margin' to 'limiter' (the margin is bearer.ratelimit's one rule)", 2)
  end
  local dict_name = opts.dict or require("bearer.ngx").dict
  local store = M.store(opts.name, dict_name, opts.per)
  if not store then
    error(("bearer: lua_shared_dict '%s' is missing (nginx.conf: lua_shared_dict %s 1m;)")
          :format(dict_name, dict_name), 2)
  end
  local ok, limiter = pcall(ratelimit.new, { requests = opts.requests, per = opts.per,
                                             store = store, sleep = require("bearer.ngx").sleep })
  if not ok then error((tostring(limiter):gsub("'ratelimit'", "'limiter'")), 2) end
  return limiter
end

return M
