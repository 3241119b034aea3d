--- bearer.json: the one place JSON enters and leaves the SDK, on
-- lua-cjson's `cjson.safe` (decode returns nil, err instead of raising).
--
-- lua-cjson is a run-time dependency bearer does not carry (the rockspec
-- lists it; Debian's lua-cjson package serves 5.1 to 5.4 and LuaJIT). When
-- it is missing, every module that needs JSON stops here with one line
-- saying what to install, instead of the loader's list of every path tried.
--
-- Debian's lua-cjson (2.1.0) has no array marker and decodes every number
-- as a float; this file owns both gaps, so every API module decodes and
-- encodes the same way:
--   decode: JSON nulls of objects removed (nulls inside arrays stay
--           cjson.null to keep lengths), integral numbers as Lua integers
--           where the Lua has them (5.3+);
--   encode: a table passed through `array(t)` goes out as `[...]`, also
--           when empty (cjson would write `{}`).
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

local M = { null = cjson.null }

local tointeger = math.tointeger       -- nil on 5.1 and LuaJIT: no integer subtype
local INT_MAX = 2 ^ 53                 -- beyond this a float is not an exact count

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

-- Nulls out of objects, integral floats to integers, in place. It visits
-- every value of every decoded body (on a 34 KB page, ~40 % of the
-- decode's own time), so it is written for that: one type() per value,
-- through a local; arrays (cjson fills their array part, and an object's
-- keys are all strings, so # is 0 for it) walked by index instead of
-- next(); nulls looked for in objects only, where they go.
local type, pairs, null = type, pairs, cjson.null

local function integral(x)
  if x == x and x > -INT_MAX and x < INT_MAX then return tointeger(x) end
end

local function normalise(v)
  local n = #v
  if n > 0 then
    for i = 1, n do
      local x = v[i]
      local t = type(x)
      if t == "table" then
        normalise(x)
      elseif t == "number" and tointeger then
        local j = integral(x)
        if j then v[i] = j end
      end
    end
    return v
  end
  for k, x in pairs(v) do
    local t = type(x)
    if t == "table" then
      normalise(x)
    elseif t == "number" then
      if tointeger then
        local j = integral(x)
        if j then v[k] = j end
      end
    elseif x == null then
      v[k] = nil
    end
  end
  return v
end

--- Replaces JSON nulls in objects by absence (so `if t.next_cursor then`
-- means what it reads) and integral numbers by integers; in place, on a
-- document as cjson decodes it (objects keyed by strings, arrays that are
-- sequences).
---@param v any
---@return any v
function M.normalise(v)
  if type(v) ~= "table" then
    if tointeger and type(v) == "number" and v == v and v > -INT_MAX and v < INT_MAX then
      return tointeger(v) or v
    end
    return v
  end
  return normalise(v)
end

--- The decoded, normalised document, or nil and cjson's reason.
---@param text string
---@return any doc
---@return string|nil why
function M.decode(text)
  local doc, why = cjson.decode(text)
  if doc == nil then return nil, why end
  return M.normalise(doc)
end

return M
