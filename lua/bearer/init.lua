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
          .. "it targets (README \"Which Lua\")"):format(path, built or "another Lua or an older bearer",
                                              running, detail, running)
end

local loaded, core = pcall(require, "bearer.core")
if not loaded then error(core_load_error(tostring(core)), 0) end
local client = require "bearer.client"
local errors = require "bearer.error"
local ratelimit = require "bearer.ratelimit"

local M = {
  _VERSION = core._VERSION,
  error = errors,
  client = client.new,
  ratelimit = ratelimit.new,
}

--- bearer.key(secret [, {scheme=}]) raises on a secret its scheme refuses;
-- key.from_env and key.from_file return nil, err instead (the secret comes
-- from outside the program). Schemes: overten, optiverse, firebase,
-- webhook, token (no format, only the header rules); detected when absent.
M.key = setmetatable({
  new = core.key_new,
  from_env = core.key_from_env,
  from_file = core.key_from_file,
  is = core.key_is,
}, {
  __call = function(_, secret, opts) return core.key_new(secret, opts) end,
})

return M
