--- bearer.json: the one place JSON enters and leaves the SDK: the core's
-- reader for decoding, lua-cjson's `cjson.safe` for encoding.
--
-- lua-cjson is a run-time dependency bearer does not carry (the rockspec
-- lists it; Debian's lua-cjson package serves 5.1 to 5.4 and LuaJIT). When
-- it is missing, every module that needs JSON stops here with one line
-- saying what to install, instead of the loader's list of every path tried.
--
-- Every API module decodes and encodes through here, the same way:
--   decode: the core's reader (src/json.c): JSON nulls of objects removed
--           (nulls inside arrays stay json.null to keep lengths), integers
--           as Lua integers where the Lua has them (5.3+). Debian's
--           lua-cjson (2.1.0) gave floats and kept nulls, and a second
--           walk to fix both cost more than its decode was worth;
--   encode: lua-cjson, and a table passed through `array(t)` goes out as
--           `[...]`, also when empty (cjson would write `{}`).
local ok, cjson = pcall(require, "cjson.safe")
if not ok then
  local why = tostring(cjson)
  if why:find("^module 'cjson%.safe' not found") then
    local running = type(jit) == "table" and "LuaJIT" or _VERSION
    why = ("lua-cjson is not installed for %s (Debian: apt-get install lua-cjson; "
           .. "LuaRocks: luarocks install lua-cjson)"):format(running)
  end
  error("bearer: " .. why, 0)
end

local json_decode = require("bearer.core").json_decode

local M = { null = cjson.null }

local arrays = setmetatable({}, { __mode = "k" })   -- tables marked by array()

-- An empty array cannot be told from an empty object once it is a Lua
-- table, so it travels through cjson as this string and is swapped for
-- `[]` in the output. The token holds random bytes of this process, so no
-- caller's string can be taken for it.
local EMPTY = ("\0bearer-empty-array-%08x%08x\0"):format(
  math.random(0, 0x7fffffff), (tonumber(tostring({}):match("0x(%x+)"), 16) or 0) % 0x7fffffff)
local EMPTY_PATTERN = assert(cjson.encode(EMPTY)):gsub("%p", "%%%0")

--- Marks `t` as a JSON array (sent as `[]` when empty); returns `t`.
---@param t table|nil
---@return table t
function M.array(t)
  if t == nil then t = {} end
  if type(t) ~= "table" then
    error("bad argument #1 to 'array' (table expected, got " .. type(t) .. ")", 2)
  end
  arrays[t] = true
  return t
end

--- Whether `t` was marked with array().
---@param t any
---@return boolean
function M.is_array(t) return arrays[t] == true end

-- A copy of v where every marked empty array is the EMPTY token; v itself
-- is left as the caller built it. Tables without a marked empty array
-- inside are shared, not copied.
local function mark_empty(v, seen)
  if type(v) ~= "table" then return v, false end
  if arrays[v] and next(v) == nil then return EMPTY, true end
  if seen[v] then return v, false end
  seen[v] = true
  local out, changed = nil, false
  for k, x in pairs(v) do
    local y, c = mark_empty(x, seen)
    if c then
      out = out or {}
      out[k] = y
      changed = true
    end
  end
  if not changed then return v, false end
  for k, x in pairs(v) do if out[k] == nil then out[k] = x end end
  return out, true
end

--- JSON text of `v`, or nil and cjson's reason.
---@param v any
---@return string|nil json
---@return string|nil why
function M.encode(v)
  local marked, changed = mark_empty(v, {})
  local text, why = cjson.encode(marked)
  if not text then return nil, why end
  if changed then text = text:gsub(EMPTY_PATTERN, "[]") end
  return text
end

--- The decoded document, or nil and the reason (with the byte offset).
-- Object members whose value is null are left out (so `if t.next_cursor
-- then` means what it reads); a null inside an array stays `json.null`, so
-- lengths hold. Numbers written as integers come back as Lua integers
-- where the Lua has them (5.3+), and so does an integral number below 2^53
-- written with a fraction or exponent (`1.0`, `1e3`). Strict RFC 8259;
-- nesting deeper than 1000 is refused. The reader is the core's
-- (src/json.c says why it is not lua-cjson's).
---@param text string
---@return any doc
---@return string|nil why
function M.decode(text) return json_decode(text) end

return M
