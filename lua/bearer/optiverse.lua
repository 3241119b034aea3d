--- bearer.optiverse: the Optiverse meeting API (records, protocol templates,
-- structured and unstructured summaries), read-only, Bearer keys only.
--
--   local optiverse = require "bearer.optiverse"
--   local ov = optiverse.client()            -- OPTIVERSE_API_KEY, OPTIVERSE_BASE_URL
--   for rec in ov:records{ dateFrom = "2025-01-01" } do print(rec.meetingTitle) end
--   for rec in ov:watch_records{ since = "2026-11-01T00:00:00Z" } do ... end
--
-- Single calls return `nil, err`; iterators raise the error object (a
-- generic-for cannot return one). Argument values the API would refuse are
-- checked here first, so a bad call costs no request of a rate-limited key.
local bearer = require "bearer"
local errors = require "bearer.error"
local json = require "cjson.safe"

local M = {}
local Client = {}
Client.__index = Client

M.DEFAULT_BASE_URL = "https://api.optiverse.ai/external-api"
M.POLL_INTERVAL = 180        -- the documented limit: one request per 3 minutes
M.MAX_BACKOFF = 3600         -- the watcher's longest wait after failures (Retry-After aside)
M.RECORDS_LIMIT = 100
M.SUMMARIES_LIMIT = 50

--- The documented error codes and the kind each one means; a code in the
-- body wins over the HTTP status (which is only the fallback).
M.CODE_KIND = {
  AUTH001 = "auth", AUTH002 = "auth", KEY001 = "conflict",
  VAL001 = "validation", PERM001 = "not_found", SRV500 = "server",
}

local SUMMARY_TYPES = { structured = true, unstructured = true }
-- Failures a watcher waits out instead of raising.
local TRANSIENT = { server = true, timeout = true, connection = true, rate_limit = true }

-- {====================================================== errors

-- The core already reads {"error":{"code":..}}, {"code":..} and
-- {"error":"CODE"}; these are the other shapes an undocumented body may take.
local function code_in_body(body)
  if type(body) ~= "string" or body == "" then return nil end
  local doc = json.decode(body)
  if type(doc) == "table" then
    local e = doc.error
    local candidates = {
      type(doc.errors) == "table" and type(doc.errors[1]) == "table" and doc.errors[1].code,
      type(e) == "table" and (e.errorCode or e.error_code),
      doc.errorCode,
      type(doc.data) == "table" and doc.data.code,
    }
    for i = 1, 4 do
      if type(candidates[i]) == "string" and candidates[i] ~= "" then return candidates[i] end
    end
    return nil
  end
  -- Plain text: only a documented code counts, never any word that looks like one.
  for word in body:sub(1, 200):gmatch("%u+%d%d%d") do
    if M.CODE_KIND[word] then return word end
  end
end

--- Gives an HTTP error object the kind its Optiverse code means (errors
-- without a status, such as transport failures, are left as they are).
function M.classify(err)
  if not errors.is(err) or not err.status then return err end
  if type(err.code) ~= "string" or err.code:match("^http_%d+$") then
    err.code = code_in_body(err.body) or err.code
  end
  err.kind = M.CODE_KIND[err.code] or err.kind
  return err
end

local function invalid(name, why)
  return errors.new{ kind = "validation", code = "invalid_argument", argument = name,
                     message = name .. " " .. why }
end

-- }======================================================

-- {====================================================== argument checks

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

--- Formats epoch seconds as the ISO 8601 UTC form the API itself uses.
function M.format_time(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
function M.is_uuid(s) return type(s) == "string" and s:match(UUID) ~= nil end

local RECORD_FILTERS = { limit = "number", offset = "number", dateFrom = "string",
                         dateTo = "string" }
local SUMMARY_FILTERS = { protocolId = "string", recordId = "string", limit = "number",
                          offset = "number", dateFrom = "string", dateTo = "string",
                          type = "string" }

-- Caller mistakes (a table expected, an unknown filter, a wrong type) raise
-- at the caller of the public method: `level` counts from here.
local function check_types(fname, filters, spec, level)
  if filters == nil then return {} end
  if type(filters) ~= "table" then
    error(("bad argument #1 to '%s' (table expected, got %s)"):format(fname, type(filters)),
          level + 1)
  end
  for name, value in pairs(filters) do
    local want = spec[name]
    if not want then
      error(("bad option '%s' to '%s' (unknown filter)"):format(tostring(name), fname), level + 1)
    end
    if type(value) ~= want then
      error(("bad option '%s' to '%s' (%s expected, got %s)")
            :format(name, fname, want, type(value)), level + 1)
    end
  end
  if filters.type ~= nil and not SUMMARY_TYPES[filters.type] then
    error(("bad option 'type' to '%s' ('structured' or 'unstructured' expected, got '%s')")
          :format(fname, filters.type), level + 1)
  end
  return filters
end

local function integer_in(v, min, max)
  return v % 1 == 0 and v >= min and v <= max
end

--- The query for `filters` (already type-checked), or nil and a
-- `validation` error naming the first bad parameter.
local function build_query(filters, max_limit)
  local q = {}
  if filters.limit ~= nil then
    if not integer_in(filters.limit, 1, max_limit) then
      return nil, invalid("limit", "must be an integer from 1 to " .. max_limit
                          .. " (got " .. tostring(filters.limit) .. ")")
    end
    q.limit = ("%d"):format(filters.limit)
  end
  if filters.offset ~= nil then
    if not integer_in(filters.offset, 0, 2 ^ 53) then
      return nil, invalid("offset", "must be an integer >= 0 (got " .. tostring(filters.offset) .. ")")
    end
    q.offset = ("%d"):format(filters.offset)
  end
  local from, to
  for _, name in ipairs{ "dateFrom", "dateTo" } do
    local v = filters[name]
    if v ~= nil then
      local t, date_only = M.parse_time(v)
      if not t then
        return nil, invalid(name, "must be an ISO 8601 date (YYYY-MM-DD) or date-time "
                            .. "(YYYY-MM-DDTHH:MM:SS[.fff]Z or ±HH:MM), got '" .. v .. "'")
      end
      if name == "dateFrom" then from = t
      else to = date_only and t + 86399 or t end
      q[name] = v
    end
  end
  if from and to and from > to then
    return nil, invalid("dateFrom", "must not be after dateTo")
  end
  for _, name in ipairs{ "protocolId", "recordId" } do
    local v = filters[name]
    if v ~= nil then
      if not M.is_uuid(v) then return nil, invalid(name, "must be a UUID (got '" .. v .. "')") end
      q[name] = v
    end
  end
  return q
end

-- }======================================================

-- {====================================================== client

local FORBIDDEN = {
  auth = "Optiverse takes only Authorization: Bearer",
  key = "use api_key",
  scheme = "use api_key with a bearer.Key of the scheme you need",
}

--- optiverse.client{ api_key =, base_url =, ...bearer.client options } -> client
-- Without api_key, OPTIVERSE_API_KEY is read (scheme "optiverse"); a
-- missing key raises a `config` error object: a client without one is of
-- no use, and failing at construction points at the cause.
function M.client(opts)
  if opts == nil then opts = {} end
  if type(opts) ~= "table" then
    error("bad argument #1 to 'client' (table expected, got " .. type(opts) .. ")", 2)
  end
  for name, why in pairs(FORBIDDEN) do
    if opts[name] ~= nil then
      error(("bad option '%s' to 'client' (%s)"):format(name, why), 2)
    end
  end
  local key, owned = opts.api_key, true
  if key == nil then
    local err
    key, err = bearer.key.from_env("OPTIVERSE_API_KEY", { scheme = "optiverse" })
    if not key then
      if err.code == "missing_key" then
        err = errors.new{ kind = "config", code = "missing_key",
          message = "no Optiverse API key: pass api_key or set OPTIVERSE_API_KEY" }
      end
      error(err)
    end
  elseif type(key) == "string" then
    key = bearer.key(key, { scheme = "optiverse" })
  elseif bearer.key.is(key) then
    owned = false
  else
    error("bad option 'api_key' to 'client' (bearer.Key or string expected, got "
          .. type(key) .. ")", 2)
  end
  local base_url = opts.base_url
  if base_url == nil then
    base_url = os.getenv("OPTIVERSE_BASE_URL")
    if base_url == nil or base_url == "" then base_url = M.DEFAULT_BASE_URL end
  end
  local http_opts = {}
  for k, v in pairs(opts) do http_opts[k] = v end
  http_opts.api_key, http_opts.key, http_opts.base_url = nil, key, base_url
  http_opts.error_parser = M.classify
  local http = require("bearer.client").new(http_opts, 2)
  return setmetatable({
    http = http,
    _key = key,
    _owned_key = owned,
    _templates = nil,        -- protocolId (lower case) -> template, once fetched
  }, Client)
end

--- Closes the HTTP client, and the key when this client made it.
function Client:close()
  self.http:close()
  if self._owned_key and not self._key:is_closed() then self._key:close() end
end
Client.__close = Client.close

function Client:key() return self._key end

-- One GET; the decoded body if it has the success envelope's `data` array.
local function get(http, path, query, opts)
  local res, err = http:get(path, { query = query, max_retries = opts and opts.max_retries })
  if not res then return nil, err end
  local doc = res.json
  if type(doc) ~= "table" or type(doc.data) ~= "table" then
    return nil, errors.new{ kind = "decode", code = "unexpected_response", status = res.status,
      method = "GET", path = path,
      message = "response has no data array ("
                .. http:redact((res.body or ""):sub(1, 100)) .. ")" }
  end
  return doc
end

--- One page of records: the response `{success, data, pagination}`, or nil, err.
-- Without `limit` the API's default (50) applies.
function Client:records_page(filters)
  filters = check_types("records_page", filters, RECORD_FILTERS, 2)
  local q, err = build_query(filters, M.RECORDS_LIMIT)
  if not q then return nil, err end
  return get(self.http, "/v1/list-records", q)
end

--- Every template the key can see (an array), or nil, err. Refreshes the
-- cache that summaries use to pick their endpoint.
function Client:templates()
  local doc, err = get(self.http, "/v1/protocol-templates")
  if not doc then return nil, err end
  local by_id = {}
  for _, t in ipairs(doc.data) do
    if type(t) == "table" and type(t.protocolId) == "string" then
      by_id[t.protocolId:lower()] = t
    end
  end
  self._templates = by_id
  return doc.data
end

--- One template by protocolId (cached after the first lookup), or nil, err
-- (`not_found`, code `unknown_template`, when the key cannot see it).
function Client:template(protocol_id)
  if type(protocol_id) ~= "string" then
    error("bad argument #1 to 'template' (string expected, got " .. type(protocol_id) .. ")", 2)
  end
  if not M.is_uuid(protocol_id) then
    return nil, invalid("protocolId", "must be a UUID (got '" .. protocol_id .. "')")
  end
  local id = protocol_id:lower()
  -- A miss refreshes once: the template may have been created since.
  if not (self._templates and self._templates[id]) then
    local ok, err = self:templates()
    if not ok then return nil, err end
  end
  local t = self._templates[id]
  if not t then
    return nil, errors.new{ kind = "not_found", code = "unknown_template",
      message = "no protocol template " .. protocol_id .. " among those this key can see" }
  end
  return t
end

-- The summaries path for validated `filters`: from `type`, else the template.
local function summaries_path(self, filters)
  local kind = filters.type
  if not kind then
    local t, err = self:template(filters.protocolId)
    if not t then return nil, err end
    kind = t.summaryType
    if not SUMMARY_TYPES[kind] then
      return nil, errors.new{ kind = "decode", code = "unknown_summary_type",
        message = "template " .. filters.protocolId .. " has summaryType '" .. tostring(kind)
                  .. "'; pass type = 'structured' or 'unstructured'" }
    end
  end
  return "/v1/summaries/" .. kind
end

local function summaries_query(filters)
  if filters.protocolId == nil then return nil, invalid("protocolId", "is required") end
  return build_query(filters, M.SUMMARIES_LIMIT)
end

--- One page of summaries for a template: `{success, data, pagination}`, or
-- nil, err. Without `limit` the API's default (20) applies.
function Client:summaries_page(filters)
  filters = check_types("summaries_page", filters, SUMMARY_FILTERS, 2)
  local q, err = summaries_query(filters)
  if not q then return nil, err end
  local path
  path, err = summaries_path(self, filters)
  if not path then return nil, err end
  return get(self.http, path, q)
end

-- }======================================================

-- {====================================================== iterators

-- A generic-for iterator over every item of an offset-paged listing. Pages
-- advance by what arrived (not by `limit`); the walk ends on hasMore ==
-- false, on offset + #data >= total, or on an empty page. Items sharing a
-- recordId are yielded once: the lists are newest first, so an insert
-- during the walk shifts an item already seen onto the next page.
local function walk(fetch, query)
  local offset = tonumber(query.offset) or 0
  local buf, i, done, seen = {}, 0, false, {}
  return function()
    while true do
      i = i + 1
      local item = buf[i]
      if item ~= nil then
        local id = type(item) == "table" and item.recordId
        if not id then return item end
        if not seen[id] then seen[id] = true; return item end
      elseif done then
        return nil
      else
        query.offset = ("%d"):format(offset)
        local doc, err = fetch(query)
        if not doc then done = true; error(err) end
        buf, i = doc.data, 0
        local p = type(doc.pagination) == "table" and doc.pagination or {}
        local total = tonumber(p.total)
        done = #buf == 0 or p.hasMore == false or (total ~= nil and offset + #buf >= total)
        offset = offset + #buf
      end
    end
  end
end

--- for rec in ov:records{ dateFrom=, dateTo=, limit= (page size, default
-- 100), offset= (where to start) } do ... end -- raises a failed page's error.
function Client:records(filters)
  filters = check_types("records", filters, RECORD_FILTERS, 2)
  local q, err = build_query(filters, M.RECORDS_LIMIT)
  if not q then error(err) end
  q.limit = q.limit or ("%d"):format(M.RECORDS_LIMIT)
  local http = self.http
  return walk(function(query) return get(http, "/v1/list-records", query) end, q)
end

--- for s in ov:summaries{ protocolId=, recordId=, dateFrom=, dateTo=,
-- limit= (default 50), offset=, type= } do ... end -- the endpoint follows
-- the template's summaryType unless `type` is given.
function Client:summaries(filters)
  filters = check_types("summaries", filters, SUMMARY_FILTERS, 2)
  local q, err = summaries_query(filters)
  if not q then error(err) end
  q.limit = q.limit or ("%d"):format(M.SUMMARIES_LIMIT)
  local path
  return walk(function(query)
    if not path then
      local e
      path, e = summaries_path(self, filters)
      if not path then return nil, e end
    end
    return get(self.http, path, query)
  end, q)
end

-- }======================================================

M.Client = Client
-- The watcher lives in its own file; it shares these private helpers.
require("bearer.optiverse.watch").install(M, Client, {
  invalid = invalid, build_query = build_query, get = get, TRANSIENT = TRANSIENT,
})

return M
