--- bearer.optiverse.endpoints: the Optiverse API as data (bearer.endpoint
-- builds the methods). Read-only, offset-paged lists. Filters are checked
-- here first, so a bad call costs no request of a rate-limited key;
-- unknown filters raise (the API would ignore them silently).
-- Hand-written in bearer.optiverse: template (a cache), the summaries'
-- endpoint (chosen by the template's type); bearer.watch: watch_records.
local check = require "bearer.check"

local M = { RECORDS_LIMIT = 100, SUMMARIES_LIMIT = 50 }

--- The key scheme of this API (bearer.optiverse.schemes).
M.schemes = require "bearer.optiverse.schemes"

local TIME = { "time" }

-- dateFrom and dateTo are inclusive; a date-only dateTo covers its day.
local function date_order(opts)
  if opts.dateFrom and opts.dateTo then
    local from = check.parse_time(opts.dateFrom)
    local to, date_only = check.parse_time(opts.dateTo)
    if date_only then to = to + 86399 end
    if from > to then return check.invalid("dateFrom", "must not be after dateTo") end
  end
  return true
end

local function filters(limit, extra)
  local f = { limit = { "integer", min = 1, max = limit }, offset = { "integer", min = 0 },
              dateFrom = TIME, dateTo = TIME }
  for k, v in pairs(extra or {}) do f[k] = v end
  return f
end

M.RECORD_FILTERS = filters(M.RECORDS_LIMIT)
M.SUMMARY_FILTERS = filters(M.SUMMARIES_LIMIT, {
  protocolId = { "uuid", needed = true },
  recordId = { "uuid" },
  type = { "enum", values = { structured = true, unstructured = true },
           expected = "'structured' or 'unstructured'", raise_invalid = true },
})

local function records(name, paged)
  return { name = name, method = "GET", path = "/v1/list-records", strict = "filter",
           fields = M.RECORD_FILTERS, validate = date_order, paged = paged,
           page_defaults = paged and { limit = M.RECORDS_LIMIT } or nil,
           dedupe = "recordId" }
end

--- One page of records: the response `{success, data, pagination}`.
M.records_page = records("records_page")
--- Every record, lazily, newest first.
M.records = records("records", "offset")

M.templates = { name = "templates", method = "GET", path = "/v1/protocol-templates", opts = "none" }

--- Both summaries methods; `kind_of(self, opts)` finds the endpoint's
-- kind (structured or unstructured) from the template.
---@param name string the method's name
---@param paged "offset"|nil
---@param kind_of fun(self: table, opts: table): table|nil, bearer.Error|nil
---@return table declaration
function M.summaries(name, paged, kind_of)
  return { name = name, method = "GET", path = "/v1/summaries/{kind}", strict = "filter",
           path_from = kind_of,
           fields = M.SUMMARY_FILTERS, validate = date_order, paged = paged,
           page_defaults = paged and { limit = M.SUMMARIES_LIMIT } or nil,
           dedupe = "recordId" }
end

return M
