--- bearer.redis: state shared between hosts through a Redis server
-- (issue 11): rate-limit slots, the polling slot, record claims and
-- webhook replay marks.
--
-- This file owns the policy: redis:// URLs, key names, the scripts and
-- what a failure becomes. The bytes and their parsing are hiredis's
-- (src/redis.c); how a command waits is the host's `redis_call`: plain Lua
-- blocks on a hiredis connection (below, bounded by the client's connect
-- timeout), nginx yields on a cosocket (bearer.ngx.redis).
--
-- Keys never reach Redis: stores are named by base URL and the key's
-- fingerprint, and webhook marks by the delivery's signature (public: it
-- travelled in a header). Names start "bearer:" so they can be found.
local core = require "bearer.core"
local errors = require "bearer.error"

local M = {}

M.DEFAULT_TIMEOUT = 5   -- seconds: the client's default connect timeout
M.DOWN_FOR = 1          -- seconds a store that failed answers at once, without trying again

-- The limiter's rule (bearer.ratelimit's `book`) on Redis's clock, in one
-- atomic script: the slots are a list of start times, ascending.
local BOOK = [[
local requests, per, margin = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local slots = redis.call('LRANGE', KEYS[1], 0, -1)
local start = now
if #slots >= requests then
  start = math.max(now, tonumber(slots[#slots - requests + 1]) + per + margin)
end
redis.call('RPUSH', KEYS[1], string.format('%.6f', start))
redis.call('LTRIM', KEYS[1], -requests, -1)
redis.call('PEXPIRE', KEYS[1], math.ceil((start - now + per + margin + 2) * 1000))
return string.format('%.6f', start - now)
]]

-- A claim is won by the first SET NX; its holder wins it again (a poll
-- retried after a failure must not lose the records it claimed).
local CLAIM = [[
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then return 1 end
return 0
]]

local function config_error(code, message)
  return errors.new{ kind = "config", code = code, message = message }
end

--- The error object of a store that failed: kind connection, code
-- store_unavailable (the nginx host's cosocket calls build theirs here too).
---@param message string
---@return table err
function M.store_error(message)
  return errors.new{ kind = "connection", code = "store_unavailable",
                     message = "redis store unavailable: " .. message }
end
local store_error = M.store_error

--- parse(url) -> addr | nil, why. redis://[[user]:password@]host[:port][/db]
-- addr.label names the server without the password (for messages).
---@param url string
---@return table|nil addr, string|nil why
function M.parse(url)
  if type(url) ~= "string" then return nil, "string expected, got " .. type(url) end
  local rest = url:match("^redis://(.*)$")
  if not rest then return nil, "redis://host[:port][/db] expected" end
  local user, password
  local cred, hostpart = rest:match("^([^@/]*)@(.*)$")
  if cred then
    user, password = cred:match("^([^:]*):(.*)$")
    if not user then user, password = "", cred end
    rest = hostpart
  end
  local host, port, db = rest:match("^([%w%.%-]+):?(%d*)/?(%d*)$")
  if not host then return nil, "redis://host[:port][/db] expected (no password shown)" end
  port = tonumber(port) or 6379
  db = tonumber(db) or 0
  if port < 1 or port > 65535 then return nil, "port out of range" end
  local label = ("redis://%s:%d/%d"):format(host, port, db)
  local setup = {}
  if password and password ~= "" then
    setup[#setup + 1] = user ~= "" and { "AUTH", user, password } or { "AUTH", password }
  end
  if db ~= 0 then setup[#setup + 1] = { "SELECT", tostring(db) } end
  return { host = host, port = port, db = db, label = label, setup = setup,
           pool = label .. "|" .. (user or "") }
end

-- {====================================================== blocking I/O (plain Lua)

local conns = {}   -- label -> open hiredis connection of this process

--- The plain host's redis_call: one command on this process's connection
-- to addr, made (and set up) when missing; answers as src/redis.c does.
---@param addr table
---@param timeout number
---@param argv string[]
---@return any|nil value, table|nil err
function M.blocking_call(addr, timeout, argv)
  local conn = conns[addr.pool]
  if not (conn and conn:is_open()) then
    local err
    conn, err = core.redis_connect(addr.host, addr.port, timeout)
    if not conn then return nil, err end
    for _, cmd in ipairs(addr.setup) do
      local ok, _, msg = conn:command(cmd)
      if not ok then return nil, _ end
      if msg then
        conn:close()
        return nil, store_error(cmd[1] .. " refused: " .. msg)
      end
    end
    conns[addr.pool] = conn
  end
  return conn:command(argv)
end

-- }======================================================

local Store = {}
Store.__index = Store

local down = {}    -- label -> { until_t, err }: a failure remembered for DOWN_FOR
local shas = {}    -- script -> its SHA1 on the servers of this process

--- check_url(url, option, fname, level): raises, at `level`, a config
-- error object for a core without hiredis, or a message for a bad URL.
---@param url any
---@param option string
---@param fname string
---@param level integer
function M.check_url(url, option, fname, level)
  level = level + 1
  if type(url) ~= "string" then
    error(("bad option '%s' to '%s' (redis:// URL expected, got %s)"):format(option, fname, type(url)), level)
  end
  if not core.redis then
    error(config_error("no_hiredis", "bearer was built without hiredis: a redis:// store needs "
                       .. "libhiredis-dev at build time (make build finds it with pkg-config)"), level)
  end
  local addr, why = M.parse(url)
  if not addr then error(("bad option '%s' to '%s' (%s)"):format(option, fname, why), level) end
  return addr
end

--- store(url, opts) -> a store named opts.name on the server of `url`.
-- opts: name, timeout (seconds), host (its redis_call, clock and warn),
-- on_store_error ("error" or "local"), fallback (the per-host store the
-- limiter falls back to), level. A bad URL, or a core built without
-- hiredis, raises a `config` error object at `level`.
---@param url string
---@param opts table
---@return table store
function M.store(url, opts)
  local addr = M.check_url(url, opts.option or "store", opts.fname or "store", (opts.level or 1) + 1)
  local h = opts.host or require("bearer.host").current()
  return setmetatable({
    addr = addr, name = opts.name, timeout = opts.timeout or M.DEFAULT_TIMEOUT,
    call = h.redis_call, clock = h.clock, warn = h.warn,
    on_store_error = opts.on_store_error, fallback = opts.fallback,
  }, Store)
end

--- store:command(argv) -> value | nil, err (kind connection). A server
-- that failed is not asked again for DOWN_FOR seconds: each caller gets
-- the same error at once instead of waiting out a timeout of its own.
---@param argv string[]
---@return any|nil value, table|nil err
function Store:command(argv)
  local label = self.addr.label
  local d = down[label]
  if d and self.clock() < d.until_t then return nil, d.err end
  local ok, value, msg = self.call(self.addr, self.timeout, argv)
  if not ok then
    local err = value
    if not (type(err) == "table" and err.kind) then err = store_error(tostring(err)) end
    down[label] = { until_t = self.clock() + M.DOWN_FOR, err = err }
    return nil, err
  end
  down[label] = nil
  if msg then return nil, store_error(label .. " refused " .. argv[1] .. ": " .. msg) end
  return value
end

--- store:eval(script, key, args...) -> value | nil, err: EVALSHA, loading
-- the script when the server does not know it (first use, restart).
---@param script string
---@param key string
---@param ... string
---@return any|nil value, table|nil err
function Store:eval(script, key, ...)
  local sha = shas[script]
  if sha then
    local v, err = self:command{ "EVALSHA", sha, "1", key, ... }
    if v ~= nil or not err.message:find("NOSCRIPT", 1, true) then return v, err end
  end
  local loaded, err = self:command{ "SCRIPT", "LOAD", script }
  if not loaded then return nil, err end
  shas[script] = loaded
  return self:command{ "EVALSHA", loaded, "1", key, ... }
end

--- The limiter's store method: books a slot on the server; returns the
-- seconds to wait (bearer.ratelimit), or nil, err.
---@param requests integer
---@param per number
---@param margin number
---@return number|nil wait, table|nil err
function Store:book(requests, per, margin)
  local v, err = self:eval(BOOK, "bearer:rl:" .. self.name, tostring(requests),
                           ("%.6f"):format(per), ("%.6f"):format(margin))
  if v == nil then return nil, err end
  local wait = tonumber(v)
  if not wait then return nil, store_error("the rate-limit script answered " .. tostring(v)) end
  return wait
end

--- store:claim(id, ttl, token) -> true (ours), false (another's), nil, err
---@param id string
---@param ttl number
---@param token string
---@return boolean|nil ours, table|nil err
function Store:claim(id, ttl, token)
  local v, err = self:eval(CLAIM, "bearer:claim:" .. self.name .. ":" .. id, token,
                           ("%d"):format(math.max(1, math.ceil(ttl))))
  if v == nil then return nil, err end
  return v == 1
end

--- A token telling this claimant's claims from every other's, on any
-- host: 16 bytes of /dev/urandom (math.random is seeded alike in every
-- nginx worker forked from one master).
---@return string
function M.token()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(16)
  if f then f:close() end
  if not bytes or #bytes ~= 16 then
    error("bearer.redis: cannot read /dev/urandom for a claim token", 2)
  end
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

--- claims(spec, name, fname, option, level, timeout) -> a store with
-- claim(): `spec` is one already, a redis:// URL (each command bounded by
-- `timeout` seconds), or the name of a store of the current host (an
-- nginx lua_shared_dict). Anything else raises at `level`.
---@param spec any
---@param name string
---@param fname string
---@param option string
---@param level integer
---@param timeout number|nil
---@return table store
function M.claims(spec, name, fname, option, level, timeout)
  level = level + 1
  if type(spec) == "table" and type(spec.claim) == "function" then return spec end
  if type(spec) ~= "string" then
    error(("bad option '%s' to '%s' (redis:// URL or shared dict name expected, got %s)")
          :format(option, fname, type(spec)), level)
  end
  if spec:find("^redis://") then
    return M.store(spec, { name = name, level = level, option = option, fname = fname,
                           timeout = timeout })
  end
  local h = require("bearer.host").current()
  local store = h.named_store(spec, name)
  if not store then
    error(config_error("bad_store", ("%s = '%s': no such shared store here (a redis:// URL, "
      .. "or a lua_shared_dict name inside nginx)"):format(option, spec)), level)
  end
  return store
end

return M
