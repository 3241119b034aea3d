--- bearer.overten: the Overten API (document generation) on bearer's core.
--
--   local overten = require "bearer.overten"
--   local c = overten.client()                 -- OVERTEN_API_KEY, OVERTEN_BASE_URL
--   local r = assert(c:generate("excel", { prompt = "Q3 sales report" }))
--   for run in c:runs{ limit = 50 } do print(run.run_id) end
--
-- A client is a table whose `http` field is the generic bearer.client
-- (for raw calls); every method returns the decoded JSON or nil, err,
-- except iterators, which raise a failed page's error object. The
-- endpoints are declared in bearer.overten.endpoints; this file holds the
-- construction and what behaves differently: generation (sync, promotion,
-- idempotency) and wait, and downloads.
local bearer = require "bearer"
local check = require "bearer.check"
local client = require "bearer.client"
local download = require "bearer.download"
local endpoint = require "bearer.endpoint"
local endpoints = require "bearer.overten.endpoints"
local errors = require "bearer.error"
local pager = require "bearer.pager"
local task = require "bearer.task"
local webhook = require "bearer.overten.webhook"

local M = {
  webhook = webhook,
  DEFAULT_BASE_URL = "https://backend.overtenai.com/api/v1",
  SYNC_TIMEOUT = 320,      -- per attempt; the API's sync ceiling is 300 s
  WAIT_TIMEOUT = 1800,     -- the longest timeout_ms the API takes
  WAIT_FIRST = 2, WAIT_FACTOR = 1.5, WAIT_MAX = 10,
  DOWNLOAD_MAX_BYTES = download.MAX_BYTES,
  FORMATS = { excel = true, word = true, slides = true },
  TERMINAL = { completed = true, failed = true, cancelled = true, expired = true },
}

local Client = {}
Client.__index = Client
M.Client = Client

local bad_arg, bad_option = check.bad_arg, check.bad_option

-- {====================================================== errors

-- FastAPI's 422 body: {"detail": [{"loc": [...], "msg": "...", "type": "..."}]}
local function fastapi_message(detail)
  local parts = {}
  for _, item in ipairs(detail) do
    if type(item) == "table" then
      local loc = {}
      if type(item.loc) == "table" then
        for _, p in ipairs(item.loc) do loc[#loc + 1] = tostring(p) end
      end
      local where = #loc > 0 and (table.concat(loc, ".") .. ": ") or ""
      parts[#parts + 1] = where .. tostring(item.msg or item.type or "invalid")
    end
  end
  return table.concat(parts, "; ")
end

--- Reads Overten's error bodies (bearer.error.from_response's `parse`):
-- {"success": false, "error": "<code>", "message": "...", "missing": [...]}
-- and FastAPI's {"detail": [...]} or {"detail": "..."}.
---@param doc table|nil
---@return table fields
function M.parse_error(doc)
  if type(doc) ~= "table" then return {} end
  local text = errors.text
  local f = { code = text(doc.error) or text(doc.code),
              message = text(doc.message) }
  if type(doc.detail) == "table" then
    f.message = f.message or fastapi_message(doc.detail)
    f.details = doc.detail
  elseif text(doc.detail) then
    f.message = f.message or doc.detail
  end
  if type(doc.missing) == "table" then f.missing = doc.missing end
  return f
end

-- }======================================================

-- {====================================================== construction

--- The options of the bearer.client this module builds: everything but
-- our own names goes through to bearer.client, which rejects typos.
local function http_options(opts, fname)
  local out = {}
  for k, v in pairs(opts) do
    if k == "key" or k == "error_parser" then
      error(("bad option '%s' to '%s' (%s)"):format(k, fname,
            k == "key" and "use api_key" or "the module reads its own errors"), 3)
    end
    if k ~= "api_key" then out[k] = v end
  end
  return out
end

--- overten.client{ api_key=, base_url=, auth=, ...bearer.client options }
-- api_key: a bearer.Key or a string (scheme overten); default the
-- OVERTEN_API_KEY variable. Without a key this raises a `config` error
-- object: a client that cannot authenticate is a set-up mistake.
function M.client(opts)
  opts = opts or {}
  if type(opts) ~= "table" then bad_arg(1, "client", "table", type(opts)) end
  local key = opts.api_key
  if key == nil then
    local k, err = bearer.key.from_env("OVERTEN_API_KEY", { scheme = "overten" })
    if not k then
      error(errors.new{ kind = "config", code = "missing_key",
        message = "no Overten API key: pass api_key or set OVERTEN_API_KEY ("
                  .. tostring(err and err.message) .. ")" }, 2)
    end
    key = k
  elseif type(key) == "string" then
    key = bearer.key(key, { scheme = "overten" })
  elseif not bearer.key.is(key) then
    bad_option("api_key", "client", "bearer.Key or string", type(key))
  end
  local auth = opts.auth
  if auth ~= nil and auth ~= "bearer" and auth ~= "x-api-key" then
    bad_option("auth", "client", "'bearer' or 'x-api-key'", tostring(auth))
  end
  local hopts = http_options(opts, "client")
  hopts.key = key
  hopts.error_parser = M.parse_error
  hopts.base_url = opts.base_url or os.getenv("OVERTEN_BASE_URL") or M.DEFAULT_BASE_URL
  local http = client.new(hopts, 2)
  local self = setmetatable({ http = http, options = hopts }, Client)
  self.base_url = http:base_url()
  return self
end

--- overten.admin{ firebase_token= | token_provider=, base_url=, ... }
function M.admin(opts)
  return require("bearer.overten.admin").new(opts, 2)
end

function Client:close()
  self.http:close()
end
Client.__close = Client.close

--- c:with_options{ timeout=, max_retries=, headers=, retry_statuses= }: a
-- light view sharing this client's connection, key and limits, with
-- other per-call settings (bearer.client's with_options).
---@param opts table
---@return table
function Client:with_options(opts) return client.api_view(self, opts) end

-- }======================================================

-- {====================================================== declared endpoints

-- The transport of every declared endpoint: the decoded body, `true` for
-- an empty one (204).
local function call(self, method, path, ropts)
  local res, err = self.http:request(method, path, ropts)
  if not res then return nil, err end
  if res.json ~= nil then return res.json end
  return true
end

endpoint.install(Client, endpoints.client, call)

--- c:runs_page{ limit=, cursor=, ... } -> { data=, next_cursor= } | nil, err
Client.runs_page = endpoint.page_method(endpoints.runs_page, function(self, ...)
  local doc, err = call(self, ...)
  if doc == nil then return nil, err end
  local page = pager.cursor_page(doc)
  page.raw = nil
  return endpoint.carry(doc, page)
end)

-- }======================================================

-- {====================================================== generation

-- Options this module reads; everything else goes in the request body, so
-- fields the API adds later work without a new release.
local CALL_OPTIONS = { wait = { "boolean" }, wait_timeout = { "number" },
                       on_progress = { "function" }, timeout = { "number" } }
local BODY_FIELDS = { async = { "boolean" }, idempotency_key = { "string" },
                      timeout_ms = { "integer", min = 10000, max = 1800000 } }

-- A sync call retries the core's transient statuses but 408: that is the
-- sync ceiling, which this module answers itself (and each retry of it
-- could wait out the whole 320 s again).
local SYNC_RETRY_STATUSES = { 429, 500, 502, 503, 504 }

-- Whether a 408 is the sync ceiling telling us to go async.
local function says_async(err)
  if err.status ~= 408 then return false end
  local text = ((err.message or "") .. " " .. (err.code or "") .. " " .. (err.body or "")):lower()
  return text:find("async", 1, true) ~= nil
end

--- The shared generation call: sync by default (per-attempt timeout above
-- the 300 s ceiling), 202 = queued, with an idempotency_key generated once
-- per logical call and reused by every retry.
local function generation(self, path, opts, fname, prompt_required)
  local ok, err = check.fields(fname, opts, CALL_OPTIONS, nil, 2)
  if ok then ok, err = check.fields(fname, opts, BODY_FIELDS, nil, 2) end
  if ok and prompt_required then
    ok, err = check.field(fname, "prompt", opts.prompt, { "text", min = 1, max = 10000, required = true }, 2)
  end
  if not ok then return nil, err end
  local body = {}
  for k, v in pairs(opts) do
    if not CALL_OPTIONS[k] then body[k] = v end
  end
  for _, name in ipairs{ "context_files", "data_sources", "image_assets" } do
    if type(body[name]) == "table" then bearer.array(body[name]) end
  end
  local t
  t, err = task.submit(self.http, path, body, {
    async = body.async, idempotent = true, timeout = opts.timeout, sync_timeout = M.SYNC_TIMEOUT,
    sync_retry_statuses = SYNC_RETRY_STATUSES, says_async = says_async })
  if not t then return nil, err end
  if opts.wait and type(t) == "table" and t.task_id and not M.TERMINAL[t.status or ""] then
    return self:wait(t.task_id, { timeout = opts.wait_timeout, on_progress = opts.on_progress })
  end
  return t
end

--- c:generate(format, opts) -> result | queued task | nil, err
-- format: "excel", "word" or "slides". opts: the API's body fields
-- (prompt, mode, run_id, init_file, context_files, data_sources,
-- image_assets, brand, async, webhook_url, idempotency_key, file_name,
-- timeout_ms) plus wait, wait_timeout, on_progress, timeout.
---@param format string
---@param opts table
---@return table|nil, table|nil
function Client:generate(format, opts)
  if type(format) ~= "string" or not M.FORMATS[format] then
    bad_arg(1, "generate", "'excel', 'word' or 'slides'",
            type(format) == "string" and ("'" .. format .. "'") or type(format))
  end
  if type(opts) ~= "table" then bad_arg(2, "generate", "table", type(opts)) end
  return generation(self, "/" .. format .. "/generate", opts, "generate", true)
end

--- c:slides_outline(opts): the generation call of /slides/outline.
---@param opts table
---@return table|nil, table|nil
function Client:slides_outline(opts)
  if type(opts) ~= "table" then bad_arg(1, "slides_outline", "table", type(opts)) end
  return generation(self, "/slides/outline", opts, "slides_outline", true)
end

--- c:create_report(project_id [, opts]) -> queued task of the report run
-- (a Word generation: same idempotency, wait and timeout rules).
---@param project_id string
---@param opts table|nil
---@return table|nil, table|nil
function Client:create_report(project_id, opts)
  local id = check.segment("create_report", 1, project_id)
  if opts ~= nil and type(opts) ~= "table" then bad_arg(2, "create_report", "table", type(opts)) end
  return generation(self, "/projects/" .. id .. "/reports", opts or {}, "create_report", false)
end

--- c:wait(task_id [, { timeout = 1800, on_progress = fn(task) }]) -> task | nil, err
-- Polls /tasks/{id} after 2 s, then every 1.5x longer up to every 10 s,
-- with the client's sleep and clock. A completed task comes back with its
-- result's fields also at the top level (like a sync response).
---@param task_id string
---@param opts table|nil
---@return table|nil, table|nil
function Client:wait(task_id, opts)
  local id = check.segment("wait", 1, task_id)
  if opts ~= nil and type(opts) ~= "table" then bad_arg(2, "wait", "table", type(opts)) end
  opts = opts or {}
  check.fields("wait", opts, { timeout = { "number" }, on_progress = { "function" } }, nil, 1)
  return task.wait(self.http, {
    fetch = function() return call(self, "GET", "/tasks/" .. id) end,
    id = task_id, timeout = opts.timeout or M.WAIT_TIMEOUT, on_progress = opts.on_progress,
    first = M.WAIT_FIRST, factor = M.WAIT_FACTOR, max = M.WAIT_MAX,
    terminal = M.TERMINAL, success = "completed", merge = "result" })
end

-- }======================================================

-- {====================================================== downloads

local SAVE_OPTIONS = { timeout = { "number" }, max_bytes = { "number" },
                       on_progress = { "function" } }

--- c:save(url, path [, { timeout=, max_bytes=, on_progress= }]) -> { path, bytes, content_type, filename }
-- Streams `url` to `path` (bearer.download): the key goes only to the
-- API's own base URL; redirects are followed without it.
---@param url string
---@param path string
---@param opts table|nil
---@return table|nil, table|nil
function Client:save(url, path, opts)
  if type(url) ~= "string" then bad_arg(1, "save", "string", type(url)) end
  if type(path) ~= "string" then bad_arg(2, "save", "string", type(path)) end
  if opts ~= nil and type(opts) ~= "table" then bad_arg(3, "save", "table", type(opts)) end
  opts = opts or {}
  check.fields("save", opts, SAVE_OPTIONS, nil, 1)
  return download.save(self.http, url, path, opts)
end

--- c:download(run_id, path [, opts]): the run's artifact, streamed to disk.
---@param run_id string
---@param path string
---@param opts table|nil
---@return table|nil, table|nil
function Client:download(run_id, path, opts)
  local id = check.segment("download", 1, run_id)
  if type(path) ~= "string" then bad_arg(2, "download", "string", type(path)) end
  return self:save("/runs/" .. id .. "/download", path, opts)
end

-- }======================================================

return M
