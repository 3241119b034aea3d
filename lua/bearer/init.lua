--- bearer: keys that cannot leak, a bearer-token HTTP client, one error model.
--
--   local bearer = require "bearer"
--   local key = bearer.key.from_env("OVERTEN_API_KEY", { scheme = "overten" })
--   local c = bearer.client{ base_url = "https://backend.overtenai.com/api/v1", key = key }
--   local res, err = c:get("/verify")
-- The C core is built once per Lua (make: build/5.1, build/5.3, build/5.4,
-- build/luajit; luarocks: one tree per --lua-version). A core built for
-- another Lua fails in dlopen with a bare "undefined symbol"; the core names
-- its Lua in the file (src/core.c), so say which, or, when it is this very
-- Lua, that a symbol is missing (a bug to report, not a rebuild).
local function core_load_error(why)
  local symbol = why:match("undefined symbol: (luaL?_[%w_]+)")
  if not symbol and not why:find("version mismatch", 1, true) then return why end
  local running = type(jit) == "table" and "LuaJIT" or _VERSION
  local path = why:match("from file '([^']+)'") or "bearer/core.so"
  local f = io.open(path, "rb")
  local built = f and f:read("*a"):match("bearer%-core%-built%-for=([^;]+);")
  if f then f:close() end
  local detail = symbol and ("undefined symbol " .. symbol) or why:gsub("%s+", " ")
  if built == running then
    return ("bearer: %s was built for %s and %s cannot load it (%s): a bug in "
            .. "bearer's src/compat.h, please report it"):format(path, built, running, detail)
  end
  return ("bearer: %s was built for %s, not for %s (%s). Use a core built for %s: `make` "
          .. "builds build/5.1/, build/5.3/, build/5.4/ and build/luajit/; luarocks builds for the Lua "
          .. "it targets (docs/install.md, \"Which Lua\")"):format(path, built or "another Lua or an older bearer",
                                              running, detail, running)
end

local loaded, core = pcall(require, "bearer.core")
if not loaded then error(core_load_error(tostring(core)), 0) end
local client = require "bearer.client"
local errors = require "bearer.error"
local host = require "bearer.host"
local json = require "bearer.json"
local ratelimit = require "bearer.ratelimit"

--- The `bearer` module: what `require "bearer"` returns.
---@class bearer
---@field _VERSION string the core's version
---@field error bearer.error the error model (bearer.error)
---@field client fun(opts: bearer.ClientOptions): bearer.Client a generic client (bearer.client.new)
---@field ratelimit fun(opts: bearer.RateLimitOptions): bearer.Limiter a limiter to share
---@field host bearer.host the hosts (plain, nginx, test)
---@field response_of fun(t: table): bearer.ResponseMeta|nil how a table a call returned came
---@field array fun(t: table|nil): table marks `t` as a JSON array (`[]` when empty)
---@field gather fun(fns: (fun(): any)[], opts?: bearer.GatherOptions): table, table concurrent calls
---@field crypto bearer.crypto hashes and HMACs from the C core
---@field key bearer.key keys and their schemes
local M = {
  _VERSION = core._VERSION,
  error = errors,
  client = client.new,
  ratelimit = ratelimit.new,
  host = host,
  --- bearer.response_of(t) -> { status=, headers=, request_id=, attempts=, time= } | nil
  -- for any table an API method returned (a decoded body, a page).
  response_of = client.response_of,
  --- bearer.array(t) -> t, sent as a JSON array (`[]` when empty).
  array = json.array,
  --- bearer.gather(fns [, { concurrency = n }]) -> values, errs: runs the
  -- functions concurrently on the transfer engine (bearer.host.gather).
  gather = host.gather,
}

--- Hashes and HMACs from the C core. An HMAC key may be a bearer.Key,
-- whose secret never becomes a Lua string.
---@class bearer.crypto
---@field sha256_hex fun(data: string): string lower-case hex SHA-256
---@field hmac_sha256_hex fun(key: string|bearer.Key, data: string): string lower-case hex HMAC-SHA256
---@field hmac_sha256_matches fun(key: string|bearer.Key, data: string, candidates: string[]): boolean constant time
M.crypto = {
  sha256_hex = core.sha256_hex,
  hmac_sha256_hex = core.hmac_sha256_hex,
  hmac_sha256_matches = core.hmac_sha256_matches,
}

--- `n` random bytes as hex, read from the kernel. Idempotency keys and
-- temporary names must not collide across processes, which math.random
-- (seeded per process, often identically) cannot promise.
---@param n integer how many random bytes
---@return string hex 2·n lower-case hex digits
function M.random_hex(n)
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(n)
  if f then f:close() end
  if not bytes or #bytes ~= n then
    -- No /dev/urandom (a chroot): hash what differs between calls and
    -- processes; weaker, but still unique enough for an idempotency key.
    bytes = core.sha256_hex(table.concat({ tostring(core.now()), tostring(core.monotime()),
                                           tostring({}), tostring(math.random()) }, "|"))
    return bytes:sub(1, 2 * n)
  end
  return (bytes:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

--- bearer.key(secret [, {scheme=}]) raises on a secret its scheme refuses;
-- key.from_env and key.from_file return nil, err instead (the secret comes
-- from outside the program). Schemes are declared by the API modules
-- (overten, optiverse, firebase, webhook) or registered; token (no format,
-- only the header rules) is the default; detected when absent (bearer.key).
M.key = require "bearer.key"

return M
