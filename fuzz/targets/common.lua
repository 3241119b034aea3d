--- fuzz/targets/common.lua: what every fuzz target checks the same way.
-- A target returns function(data); anything it raises is a finding (the
-- harness aborts and libFuzzer keeps the input). These helpers turn
-- bearer's documented outcomes into "fine" and everything else into a raise.
local M = {}

-- {================ bearer API used here (adapt when the Lua layer moves)
local errors = require "bearer.error"
M.is_error = errors.is
M.error_kinds = errors.kinds
-- }================

--- Raises unless err is a bearer error object of a known kind whose
-- tostring works and does not contain `secret` (when given).
function M.check_error(err, secret, where)
  if not M.is_error(err) then
    error(where .. ": not a bearer error object: " .. tostring(err), 0)
  end
  if not M.error_kinds[err.kind] then
    error(where .. ": unknown error kind " .. tostring(err.kind), 0)
  end
  local line = tostring(err)
  if type(line) ~= "string" or line == "" then error(where .. ": tostring failed", 0) end
  if secret and (line:find(secret, 1, true) or tostring(err.message):find(secret, 1, true)) then
    error(where .. ": the secret shows in the error: " .. line, 0)
  end
  return err
end

--- Calls f(...) where a caller mistake may raise: a raised error object or
-- a "bad argument"/"bad option" message is fine (returns nil, raised);
-- an internal Lua error (index nil, arithmetic on a string...) is re-raised.
function M.call(where, f, ...)
  local res = table.pack(pcall(f, ...))
  if res[1] then return table.unpack(res, 2, res.n) end
  local e = res[2]
  if M.is_error(e) then M.check_error(e, nil, where); return nil, e end
  if type(e) == "string" and (e:find("bad argument", 1, true) or e:find("bad option", 1, true)) then
    return nil, e
  end
  error(where .. " raised an internal error: " .. tostring(e), 0)
end

--- Splits data at each byte "\255" into at most n parts (missing ones "").
function M.split(data, n)
  local parts, start = {}, 1
  for _ = 1, n - 1 do
    local at = data:find("\255", start, true)
    if not at then break end
    parts[#parts + 1] = data:sub(start, at - 1)
    start = at + 1
  end
  parts[#parts + 1] = data:sub(start)
  for i = #parts + 1, n do parts[i] = "" end
  return parts
end

return M
