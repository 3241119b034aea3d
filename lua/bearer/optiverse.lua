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
local check = require "bearer.check"
local client = require "bearer.client"
local endpoint = require "bearer.endpoint"
local endpoints = require "bearer.optiverse.endpoints"
local errors = require "bearer.error"
local json = require "bearer.json"
local watch = require "bearer.watch"

local M = {}
local Client = {}
Client.__index = Client

M.DEFAULT_BASE_URL = "https://api.optiverse.ai/external-api"
M.POLL_INTERVAL = 180        -- the documented limit: one request per 3 minutes
M.MAX_BACKOFF = 3600         -- the watcher's longest wait after failures (Retry-After aside)
M.RECORDS_LIMIT = endpoints.RECORDS_LIMIT
M.SUMMARIES_LIMIT = endpoints.SUMMARIES_LIMIT

--- The documented error codes and the kind each one means; a code in the
-- body wins over the HTTP status (which is only the fallback).
M.CODE_KIND = {
  AUTH001 = "auth", AUTH002 = "auth", KEY001 = "conflict",
  VAL001 = "validation", PERM001 = "not_found", SRV500 = "server",
}

local SUMMARY_TYPES = { structured = true, unstructured = true }

-- {====================================================== errors

-- The shapes an undocumented body may take beyond {"error":{"code":..}},
-- {"code":..} and {"error":"CODE"}.
local function code_in_body(doc, body)
  if type(body) ~= "string" or body == "" then return nil end
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

--- Reads Optiverse's error bodies (bearer.error.from_response's `parse`;
-- the notes do not show them, so every likely shape): the code, the
-- message, and the kind the code means, which wins over the HTTP status.
---@param doc table|nil
---@param body string
---@return table fields
function M.parse_error(doc, body)
  local text, f = errors.text, {}
  if type(doc) == "table" then
    local e = doc.error
    if type(e) == "table" then
      f.code, f.message = text(e.code) or text(e.type), text(e.message) or text(e.msg)
    else
      f.code = text(e)
    end
    f.code = f.code or text(doc.code) or text(doc.error_code)
    f.message = f.message or text(doc.message)
  end
  f.code = f.code or code_in_body(doc, body)
  f.kind = M.CODE_KIND[f.code]
  return f
end

--- Gives an HTTP error object made without the parser the code, message
-- and kind its Optiverse body means (errors without a status, such as
-- transport failures, are left as they are).
function M.classify(err)
  if not errors.is(err) or not err.status then return err end
  if type(err.code) ~= "string" or err.code:match("^http_%d+$") then
    local f = M.parse_error(json.decode(err.body or ""), err.body)
    if f.code then err.code, err.message = f.code, f.message or err.message end
  end
  err.kind = M.CODE_KIND[err.code] or err.kind
  return err
end

-- }======================================================

-- {====================================================== dates

--- Parses an ISO 8601 date or date-time into UTC epoch seconds (and true
-- for a date alone): bearer.check's, the form this API takes.
M.parse_time = check.parse_time
M.is_uuid = check.is_uuid

--- Formats epoch seconds as the ISO 8601 UTC form the API itself uses.
---@param t number
---@return string
function M.format_time(t)
  -- os.date takes years 0..9999 everywhere; beyond, or not finite, it fails inside
  if type(t) ~= "number" or not (t >= -62167219200 and t < 253402300800) then
    error("bad argument #1 to 'format_time' (epoch seconds of years 0 to 9999 expected, got "
          .. (type(t) == "number" and tostring(t) or type(t)) .. ")", 2)
  end
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
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
  http_opts.error_parser = M.parse_error
  local http = client.new(http_opts, 2)
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

--- c:with_options{ timeout=, max_retries=, headers=, retry_statuses= }: a
-- light view sharing this client's connection, key and limits, with
-- other per-call settings (bearer.client's with_options).
---@param opts table
---@return table
function Client:with_options(opts) return client.api_view(self, opts) end

function Client:key() return self._key end

-- The transport of every declared endpoint: one GET whose body must have
-- the success envelope's `data` array.
local function call(self, method, path, ropts)
  local res, err = self.http:request(method, path, ropts)
  if not res then return nil, err end
  local doc = res.json
  if type(doc) ~= "table" or type(doc.data) ~= "table" then
    return nil, errors.new{ kind = "decode", code = "unexpected_response", status = res.status,
      method = method, path = path,
      message = "response has no data array ("
                .. self.http:redact((res.body or ""):sub(1, 100)) .. ")" }
  end
  return doc
end

--- c:records_page{ dateFrom=, dateTo=, limit=, offset= } -> { success, data, pagination } | nil, err
-- Without `limit` the API's default (50) applies.
Client.records_page = endpoint.method(endpoints.records_page, call)

--- for rec in ov:records{ dateFrom=, dateTo=, limit= (page size, default
-- 100), offset= (where to start) } do ... end -- raises a failed page's error.
Client.records = endpoint.method(endpoints.records, call)

local raw_templates = endpoint.method(endpoints.templates, call)

--- Every template the key can see (an array), or nil, err. Refreshes the
-- cache that summaries use to pick their endpoint.
---@return table|nil, table|nil
function Client:templates()
  local doc, err = raw_templates(self)
  if not doc then return nil, err end
  local by_id = {}
  for _, t in ipairs(doc.data) do
    if type(t) == "table" and type(t.protocolId) == "string" then
      by_id[t.protocolId:lower()] = t
    end
  end
  self._templates = by_id
  return endpoint.carry(doc, doc.data)
end

--- One template by protocolId (cached after the first lookup), or nil, err
-- (`not_found`, code `unknown_template`, when the key cannot see it).
---@param protocol_id string
---@return table|nil, table|nil
function Client:template(protocol_id)
  if type(protocol_id) ~= "string" then check.bad_arg(1, "template", "string", type(protocol_id)) end
  local ok, err = check.field("template", "protocolId", protocol_id, { "uuid" }, 1)
  if not ok then return nil, err end
  local id = protocol_id:lower()
  -- A miss refreshes once: the template may have been created since.
  if not (self._templates and self._templates[id]) then
    ok, err = self:templates()
    if not ok then return nil, err end
  end
  local t = self._templates[id]
  if not t then
    return nil, errors.new{ kind = "not_found", code = "unknown_template",
      message = "no protocol template " .. protocol_id .. " among those this key can see" }
  end
  return t
end

-- The summaries endpoint's kind: `type` when given, else the template's.
local function summary_kind(self, filters)
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
  return { kind = kind }
end

--- One page of summaries for a template: `{success, data, pagination}`, or
-- nil, err. Without `limit` the API's default (20) applies.
Client.summaries_page = endpoint.method(endpoints.summaries("summaries_page", nil, summary_kind), call)

--- for s in ov:summaries{ protocolId=, recordId=, dateFrom=, dateTo=,
-- limit= (default 50), offset=, type= } do ... end -- the endpoint follows
-- the template's summaryType unless `type` is given.
Client.summaries = endpoint.method(endpoints.summaries("summaries", "offset", summary_kind), call)

-- }======================================================

-- {====================================================== watching

--- for rec in ov:watch_records{ since=, interval=180, max_polls=,
-- until_time=, ... } do ... end: new records as they appear, polled
-- within Optiverse's limit (bearer.watch).
---@param opts table|nil
---@return fun(): table|nil
function Client:watch_records(opts)
  local iterator = watch.new(self, opts, {
    fname = "watch_records", api = "Optiverse", interval = M.POLL_INTERVAL, max_backoff = M.MAX_BACKOFF,
    name = "optiverse-watch", id = "recordId", time = "createdAt",
    format_time = M.format_time,
    query = function(since, limit)
      local ok, err = check.fields("watch_records", { dateFrom = since, limit = limit },
                                   endpoints.RECORD_FILTERS, nil, 3)
      if not ok then return nil, err end
      return { dateFrom = since, limit = limit }
    end,
    -- the watcher spaces and retries its polls itself
    fetch = function(query)
      return call(self, "GET", "/v1/list-records", { query = query, max_retries = 0 })
    end,
  })
  return iterator   -- not a tail call: watch's raises count this frame
end

-- }======================================================

M.Client = Client

return M
