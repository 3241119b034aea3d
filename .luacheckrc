-- luacheck configuration (`make lint`; Debian: lua-check).
--
-- bearer runs on Lua 5.1 to 5.4 and LuaJIT, so the standard globals are
-- the union of all of them ("max"). The nginx API (`ngx`) is declared only
-- for the code that runs inside nginx; busted's globals only for specs.

std = "max"
max_line_length = 120

-- Code that runs inside nginx's Lua module (luacheck's ngx_lua standard:
-- `ngx` with its writable fields, ngx.status, ngx.header, ngx.ctx).
-- lua-nginx-module 0.10.21 added ngx.run_worker_thread; luacheck 1.1's
-- standard predates it.
stds.ngx_worker_thread = { read_globals = { ngx = { fields = { "run_worker_thread" } } } }
local function nginx(options)
  options = options or {}
  options.std = "max+ngx_lua+ngx_worker_thread"
  return options
end
files["lua/bearer/ngx/"] = nginx()
files["spec/nginx/"] = nginx()
files["examples/nginx/"] = nginx()
-- The emulator's route handlers (req, key) and fault appliers (f, req,
-- answer) share one signature each, used or not.
files["spec/emulator/"] = nginx{ ignore = { "212/req", "212/key", "212/f" } }

-- The host selection asks `type(ngx) == "table"` to tell whether it runs
-- inside nginx, and hands the work to bearer.ngx when it does.
files["lua/bearer/host.lua"] = nginx()

files["spec/"] = { std = "+busted" }
-- docs/testing.md's example of a user's own spec
files["examples/testing/"] = { std = "+busted" }

-- libFuzzer targets: fuzz/harness.c gives them `fuzz` (port, respond, setenv, b64url).
files["fuzz/targets/"] = { read_globals = { "fuzz" } }
