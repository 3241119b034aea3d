--- Runs a Lua 5.4 chunk in a child process that loads bearer from this
-- tree, with extra environment variables: for what a process cannot change
-- about itself (getenv at start-up, stderr).
local M = {}

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/support/[^/]+$")) or "."

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- spawn(code, env) -> a child running now; child:wait() -> as run's.
-- Several children run at once (each writes into its own pipe).
function M.spawn(code, env)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(code)
  f:close()
  local vars = {
    "LUA_PATH=" .. quote(ROOT .. "/lua/?.lua;" .. ROOT .. "/lua/?/init.lua;" .. ROOT .. "/spec/?.lua;;"),
    "LUA_CPATH=" .. quote(ROOT .. "/build/5.4/?.so;;"),
  }
  for k, v in pairs(env or {}) do vars[#vars + 1] = k .. "=" .. quote(v) end
  local p = assert(io.popen("env " .. table.concat(vars, " ") .. " lua5.4 " .. script .. " 2>&1"))
  return {
    wait = function()
      local out = p:read("a")
      local ok = p:close()
      os.remove(script)
      return out, ok
    end,
  }
end

--- run(code, env) -> combined stdout+stderr, exit ok
function M.run(code, env)
  return M.spawn(code, env).wait()
end

return M
