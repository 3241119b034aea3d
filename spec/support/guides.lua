-- The Lua examples of the guides (docs/*.md and README.md), for
-- spec/guides_spec.lua. Every ```lua block runs as its own program, as a
-- user would run it: `lua5.4 file.lua` in an empty directory, bearer on
-- LUA_PATH/LUA_CPATH, the API settings in the environment (pointed at the
-- emulator, as examples/start-emulator.sh does). A block whose first line
-- is `-- skip: <why>`, or whose fence follows a line `<!-- skip: <why> -->`
-- (for a block that must stay a copy of a file), is not run; the why is
-- required.
local files = require "support.files"

local M = {}

M.ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/support/[^/]+$")) or "."
if M.ROOT:sub(1, 1) ~= "/" then   -- the examples run elsewhere: make it absolute
  local p = assert(io.popen("cd '" .. M.ROOT .. "' && pwd"))
  M.ROOT = p:read("l")
  p:close()
end

--- Every ```lua block of `text`: { line =, code =, skip = why|nil }.
---@param text string
---@return table[]
function M.blocks(text)
  local blocks, current, n, before = {}, nil, 0, nil
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if current then
      if line:find("^```%s*$") then
        local code = table.concat(current.lines, "\n") .. "\n"
        blocks[#blocks + 1] = { line = current.line, code = code,
                                skip = code:match("^%-%- skip:%s*([^\n]*%S)") or current.skip }
        current = nil
      else
        current.lines[#current.lines + 1] = line
      end
    elseif line:find("^```lua%s*$") then
      current = { line = n + 1, lines = {},
                  skip = before and before:match("^<!%-%- skip:%s*(.-%S)%s*%-%->$") }
    end
    before = line
  end
  assert(not current, "a ```lua block is not closed")
  return blocks
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Runs one block's code with `env` in a fresh directory: output, ok.
---@param code string
---@param env table<string, string>
---@return string output stdout and stderr
---@return boolean ok
function M.run(code, env)
  local dir = files.tmpdir()
  files.write(dir .. "/example.lua", code)
  local vars = {
    "LUA_PATH=" .. quote(M.ROOT .. "/lua/?.lua;" .. M.ROOT .. "/lua/?/init.lua;;"),
    "LUA_CPATH=" .. quote(M.ROOT .. "/build/5.4/?.so;;"),
  }
  for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. quote(v) end
  local p = assert(io.popen("cd " .. quote(dir) .. " && env -u BEARER_LOG " .. table.concat(vars, " ")
                            .. " timeout 60 lua5.4 example.lua 2>&1"))
  local out = p:read("a")
  local ok = p:close()
  files.remove(dir)
  return out, ok == true
end

local function b64url(s)
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  return ((s:gsub(".", function(c)
    local bits = ""
    local b = c:byte()
    for i = 8, 1, -1 do bits = bits .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return bits
  end) .. "0000"):gsub("%d%d%d%d%d%d", function(bits)
    local v = 0
    for i = 1, 6 do if bits:sub(i, i) == "1" then v = v + 2 ^ (6 - i) end end
    return chars:sub(v + 1, v + 1)
  end):sub(1, math.ceil(#s * 4 / 3)))
end

--- An unsigned Firebase ID token for `uid`: only the emulator takes one
-- (what examples/run-demo makes with base64).
---@param uid string
---@return string
function M.emulator_token(uid)
  return table.concat({
    b64url('{"alg":"none","typ":"JWT"}'),
    b64url(('{"sub":"%s","email":"%s@example.com","exp":%d}'):format(uid, uid, os.time() + 3600)),
    b64url("emulator"),
  }, ".")
end

return M
