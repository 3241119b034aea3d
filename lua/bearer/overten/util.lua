--- bearer.overten.util: what the Overten client, admin and webhook parts
-- share: argument checks, validation errors and turning the
-- secrets the API returns into keys.
local bearer = require "bearer"
local errors = require "bearer.error"

local M = {}

--- Raises a caller mistake at the caller's caller (level 3 from here).
function M.bad_arg(n, fname, expected, got)
  error(("bad argument #%d to '%s' (%s expected, got %s)"):format(n, fname, expected, got), 3)
end

function M.bad_option(name, fname, expected, got)
  error(("bad option '%s' to '%s' (%s expected, got %s)"):format(name, fname, expected, got), 3)
end

--- Checks an option's type (nil allowed unless `required`); raises like
-- bad_option. Returns the value.
function M.opt(opts, name, want, fname, required)
  local v = opts[name]
  if v == nil and not required then return nil end
  if type(v) ~= want then
    error(("bad option '%s' to '%s' (%s expected, got %s)"):format(name, fname, want, type(v)), 3)
  end
  return v
end

--- A value the API itself would refuse: nil, err, sent nowhere.
function M.invalid(fmt, ...)
  return nil, errors.new{ kind = "validation", code = "invalid_argument",
                          message = fmt:format(...) }
end

--- A path segment from an id the caller gave (ids go in the path, so an
-- id with "/" or "?" must not change which endpoint is hit).
function M.segment(fname, n, id)
  if type(id) ~= "string" then
    error(("bad argument #%d to '%s' (string expected, got %s)"):format(n, fname, type(id)), 3)
  end
  return (id:gsub("[^%w%-%._~]", function(ch) return ("%%%02X"):format(ch:byte()) end))
end

--- Replaces t[field], a secret string from the API, by a bearer.Key, so
-- the raw string never reaches the caller's table. Returns true, or nil
-- and a `decode` error when the API sent something that is not a key.
function M.keep_secret(t, field, scheme)
  local v = t[field]
  if v == nil or bearer.key.is(v) then return true end
  t[field] = nil
  local ok, key = pcall(bearer.key, tostring(v), { scheme = scheme })
  if not ok then
    return nil, errors.new{ kind = "decode", code = "invalid_secret",
      message = ("the API returned a '%s' that is not a valid %s key"):format(field, scheme) }
  end
  t[field] = key
  return true
end

--- The JSON of a response, `true` for an empty one (204).
function M.body(res)
  if res.json ~= nil then return res.json end
  return true
end

--- A query table from the caller's filters: copies, checks value types.
function M.query(filters, fname, skip)
  local q = {}
  for k, v in pairs(filters) do
    if not (skip and skip[k]) then
      if type(k) ~= "string" then
        error(("bad argument #1 to '%s' (filter names must be strings)"):format(fname), 3)
      end
      local t = type(v)
      if t ~= "string" and t ~= "number" and t ~= "boolean" and t ~= "table" then
        error(("bad option '%s' to '%s' (string, number or boolean expected, got %s)")
              :format(k, fname, t), 3)
      end
      q[k] = v
    end
  end
  return q
end

return M
