--- bearer.check: the one vocabulary of argument checks of every API module.
--
-- Two outcomes, as everywhere in bearer: a caller mistake (a wrong type,
-- an unknown option) raises at the caller; a value of the right type that
-- the API would refuse (too long, out of range, not a UUID) returns nil
-- and a `validation` error naming the argument, and nothing is sent.
--
-- A field spec is a table: { type, required =, min =, max =, values =,
-- label = }. Types:
--   string    any string                 text     a string of min..max bytes
--   number    a number                   integer  a whole number in min..max
--   boolean   true or false              table    any table
--   list      an array (min items)       function a function
--   enum      a string among `values`    url      an http(s) URL
--   uuid      a UUID                     time     ISO 8601 date or date-time
--   scalar    string, number or boolean (and lists of them: query filters)
-- A type this file does not know raises: a check never passes silently.

--- A field spec: `{ type, required =, min =, max =, values =, label = }`.
---@class bearer.FieldSpec
---@field [1] string the type (above)
---@field required boolean|nil a missing value raises
---@field needed boolean|nil a missing value is a `validation` error
---@field min number|nil
---@field max number|nil
---@field values table<string, true>|nil enum values
---@field label string|nil the values in words

local errors = require "bearer.error"

local M = {}

--- Raises "bad argument #n to 'fname' (expected expected, got got)" at
-- the caller `level` levels above the function calling this one.
---@param n integer the argument's position
---@param fname string the function's name in the message
---@param expected string
---@param got string
---@param level integer|nil levels above the caller of the caller
function M.bad_arg(n, fname, expected, got, level)
  error(("bad argument #%d to '%s' (%s expected, got %s)"):format(n, fname, expected, got),
        (level or 1) + 2)
end

--- Raises "bad option 'name' to 'fname' (expected expected, got got)".
---@param name string the option
---@param fname string
---@param expected string
---@param got string
---@param level integer|nil
function M.bad_option(name, fname, expected, got, level)
  error(("bad option '%s' to '%s' (%s expected, got %s)"):format(name, fname, expected, got),
        (level or 1) + 2)
end

--- A value the API itself would refuse: nil, err (sent nowhere). The
-- message starts with the argument's name.
---@param name string the argument's name
---@param why string
---@return nil
---@return bearer.Error err `validation`, code `invalid_argument`
function M.invalid(name, why)
  return nil, errors.new{ kind = "validation", code = "invalid_argument", argument = name,
                          message = name .. " " .. why }
end
local invalid = M.invalid

--- A path segment from an id the caller gave (ids go in the path, so an
-- id with "/" or "?" must not change which endpoint is hit).
---@param fname string
---@param n integer the argument's position
---@param id any the id the caller gave
---@param level integer|nil
---@return string segment percent-encoded
function M.segment(fname, n, id, level)
  if type(id) ~= "string" then M.bad_arg(n, fname, "string", type(id), (level or 1) + 1) end
  return (id:gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

-- {====================================================== dates

local function days_from_civil(y, m, d)
  -- Howard Hinnant's algorithm; math.floor keeps it LuaJIT-compatible (no //).
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function days_in_month(y, m)
  if m == 2 then
    return (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) and 29 or 28
  end
  return (m == 4 or m == 6 or m == 9 or m == 11) and 30 or 31
end

--- Parses `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` into UTC
-- epoch seconds; the second value is true for a date alone. nil when the
-- text is anything else or a field is out of range.
---@param s string
---@return number|nil seconds UTC epoch seconds
---@return boolean|nil date_only
function M.parse_time(s)
  if type(s) ~= "string" then return nil end
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo < 1 or mo > 12 or d < 1 or d > days_in_month(y, mo) then return nil end
  local day = days_from_civil(y, mo, d) * 86400
  if rest == "" then return day, true end
  local h, mi, sec, frac, zone = rest:match("^T(%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$")
  if not h then return nil end
  if frac ~= "" and not frac:match("^%.%d%d?%d?%d?%d?%d?%d?%d?%d?$") then return nil end
  h, mi, sec = tonumber(h), tonumber(mi), tonumber(sec)
  if h > 23 or mi > 59 or sec > 59 then return nil end
  local offset = 0
  if zone ~= "Z" then
    local sign, oh, om = zone:match("^([+-])(%d%d):(%d%d)$")
    if not sign then return nil end
    oh, om = tonumber(oh), tonumber(om)
    if oh > 23 or om > 59 then return nil end
    offset = (sign == "-" and -1 or 1) * (oh * 3600 + om * 60)
  end
  return day + h * 3600 + mi * 60 + sec + (tonumber("0" .. frac) or 0) - offset, false
end

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
--- Whether `s` is a UUID (8-4-4-4-12 hex digits).
---@param s any
---@return boolean
function M.is_uuid(s) return type(s) == "string" and s:match(UUID) ~= nil end

-- }======================================================

-- {====================================================== field types
-- Each type: the Lua type it takes (a mismatch raises; a function decides
-- itself) and a value check returning nil (fine) or why the API would
-- refuse it.

local function integer_text(v) return tostring(math.tointeger and math.tointeger(v) or v) end

local function is_scalar(v)
  local t = type(v)
  return t == "string" or t == "number" or t == "boolean"
end

local TYPES = {
  string = { lua = "string" },
  number = { lua = "number" },
  boolean = { lua = "boolean" },
  table = { lua = "table" },
  ["function"] = { lua = "function" },
  text = {
    lua = "string",
    check = function(v, spec)
      if #v < (spec.min or 0) or #v > (spec.max or math.huge) then
        if not spec.max then return "must not be empty" end
        return ("must be %d to %d characters (got %d)"):format(spec.min or 0, spec.max, #v)
      end
    end,
  },
  integer = {
    lua = "number",
    check = function(v, spec)
      local min, max = spec.min or -2 ^ 53, spec.max or 2 ^ 53
      if v % 1 ~= 0 or not (v >= min and v <= max) then
        if spec.max then
          return ("must be an integer from %s to %s (got %s)")
                 :format(integer_text(min), integer_text(max), tostring(v))
        end
        return ("must be an integer >= %s (got %s)"):format(integer_text(min), tostring(v))
      end
    end,
  },
  list = {
    lua = "table",
    check = function(v, spec)
      if #v < (spec.min or 0) then return ("must list at least %d item(s)"):format(spec.min) end
    end,
  },
  enum = {
    lua = "string",
    check = function(v, spec)
      if not spec.values[v] then return ("must be %s (got '%s')"):format(spec.label, v) end
    end,
  },
  url = {
    lua = "string",
    check = function(v)
      if not v:find("^https?://[^/]") then return "must be an http(s) URL" end
    end,
  },
  uuid = {
    lua = "string",
    check = function(v) if not M.is_uuid(v) then return ("must be a UUID (got '%s')"):format(v) end end,
  },
  time = {
    lua = "string",
    check = function(v)
      if not M.parse_time(v) then
        return "must be an ISO 8601 date (YYYY-MM-DD) or date-time "
               .. "(YYYY-MM-DDTHH:MM:SS[.fff]Z or ±HH:MM), got '" .. v .. "'"
      end
    end,
  },
  scalar = {
    expected = "string, number or boolean",
    accepts = function(v)
      if is_scalar(v) then return true end
      if type(v) ~= "table" then return false end
      for _, x in ipairs(v) do if not is_scalar(x) then return false end end
      return true
    end,
  },
}

local function type_of(spec, fname, name)
  local t = TYPES[spec[1]]
  if not t then
    error(("bearer.check: no check for type '%s' (field '%s' of '%s')")
          :format(tostring(spec[1]), name, fname), 3)
  end
  return t
end

-- The caller-mistake half of a check: raises on a wrong type, a missing
-- required field, or (raise_invalid) a value outside a closed set.
local function check_type(fname, name, value, spec, lv)
  local t = type_of(spec, fname, name)
  local expected = spec.expected or t.expected or t.lua
  if value == nil then
    if spec.required then M.bad_option(name, fname, expected, "nil", lv + 1) end
    return
  end
  local ok
  if t.accepts then ok = t.accepts(value) else ok = type(value) == t.lua end
  if not ok then M.bad_option(name, fname, expected, type(value), lv + 1) end
  if spec.raise_invalid and t.check and t.check(value, spec) then
    M.bad_option(name, fname, expected, "'" .. tostring(value) .. "'", lv + 1)
  end
end

-- The API-refusal half: nil, err naming the field, or true.
local function check_value(name, value, spec)
  if value == nil then
    if spec.needed then return invalid(name, "is required") end
    return true
  end
  local t = TYPES[spec[1]]
  local why = t.check and t.check(value, spec)
  if why then return invalid(name, why) end
  return true
end

--- Checks `value` of field `name` of function `fname` against `spec`.
-- Raises (at the caller `level` above the caller of this) on a wrong type
-- or a missing `required` field; returns nil, err for a value the API
-- would refuse (a `needed` field missing among them); true otherwise.
---@param fname string
---@param name string the field
---@param value any
---@param spec bearer.FieldSpec
---@param level integer|nil
---@return true|nil ok
---@return bearer.Error|nil err
function M.field(fname, name, value, spec, level)
  check_type(fname, name, value, spec, (level or 1) + 1)
  return check_value(name, value, spec)
end

--- The Lua type a spec takes.
---@param spec bearer.FieldSpec
---@return string
function M.lua_type(spec)
  return type_of(spec, "?", "?").lua or "string"
end

--- Checks every field of `fields` (a table of specs) in `opts`: first
-- every caller mistake (unknown names raise when `strict` says what they
-- are called, "filter" or "option"; otherwise they are checked against
-- the spec `others` when given), then the values, by name. Returns true
-- or nil, err (the first refused value).
---@param fname string
---@param opts table|nil the caller's options
---@param fields table<string, bearer.FieldSpec>
---@param strict string|nil what an unknown name is called ("filter", "option"): it raises
---@param level integer|nil
---@param others bearer.FieldSpec|nil the spec unknown names are checked against
---@return true|nil ok
---@return bearer.Error|nil err
function M.fields(fname, opts, fields, strict, level, others)
  local lv = (level or 1) + 1
  for name, v in pairs(opts) do
    if fields[name] == nil then
      if type(name) ~= "string" then
        error(("bad argument to '%s' (option names must be strings)"):format(fname), lv + 1)
      elseif strict then
        error(("bad option '%s' to '%s' (unknown %s)"):format(name, fname, strict), lv + 1)
      elseif others then
        check_type(fname, name, v, others, lv)
      end
    end
  end
  local names = {}
  for name in pairs(fields) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do check_type(fname, name, opts[name], fields[name], lv) end
  for _, name in ipairs(names) do
    local ok, err = check_value(name, opts[name], fields[name])
    if not ok then return nil, err end
  end
  return true
end

-- }======================================================

return M
