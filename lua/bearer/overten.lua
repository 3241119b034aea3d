--- bearer.overten: the Overten API (document generation) on bearer's core.
--
--   local overten = require "bearer.overten"
--   local c = overten.client()                 -- OVERTEN_API_KEY, OVERTEN_BASE_URL
--   local r = assert(c:generate("excel", { prompt = "Q3 sales report" }))
--   for run in c:runs{ limit = 50 } do print(run.run_id) end
--
-- A client is a table whose `http` field is the generic bearer.client
-- (for raw calls); every method returns the decoded JSON or nil, err,
-- except iterators, which raise a failed page's error object.
local bearer = require "bearer"
local errors = require "bearer.error"
local json = require "cjson.safe"
local paging = require "bearer.overten.paging"
local util = require "bearer.overten.util"
local webhook = require "bearer.overten.webhook"

local M = {
  webhook = webhook,
  DEFAULT_BASE_URL = "https://backend.overtenai.com/api/v1",
  SYNC_TIMEOUT = 320,      -- per attempt; the API's sync ceiling is 300 s
  WAIT_TIMEOUT = 1800,     -- the longest timeout_ms the API takes
  WAIT_FIRST = 2, WAIT_FACTOR = 1.5, WAIT_MAX = 10,
  DOWNLOAD_MAX_BYTES = 1024 * 1024 * 1024,
  FORMATS = { excel = true, word = true, slides = true },
  TERMINAL = { completed = true, failed = true, cancelled = true, expired = true },
}

local Client = {}
Client.__index = Client
M.Client = Client

local bad_arg, bad_option, opt, invalid = util.bad_arg, util.bad_option, util.opt, util.invalid
local segment = util.segment

-- {====================================================== construction

--- The API-key options of a bearer.client this module builds: everything
-- but our own names goes through to bearer.client, which rejects typos.
local function http_options(opts, fname)
  local out = {}
  for k, v in pairs(opts) do
    if k == "key" then
      error(("bad option 'key' to '%s' (use api_key)"):format(fname), 3)
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
      error(errors.new{ kind = "config", code = "missing_api_key",
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
  hopts.base_url = opts.base_url or os.getenv("OVERTEN_BASE_URL") or M.DEFAULT_BASE_URL
  local http = require("bearer.client").new(hopts, 2)
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

-- }======================================================

-- {====================================================== plumbing

local function call(self, method, path, ropts)
  local res, err = self.http:request(method, path, ropts)
  if not res then return nil, err end
  return util.body(res)
end

local function check_opts(opts, n, fname)
  if opts == nil then return {} end
  if type(opts) ~= "table" then bad_arg(n, fname, "table", type(opts)) end
  return opts
end

local function check_text(opts, name, fname, min, max, required)
  local v = opts[name]
  if v == nil then
    if required then
      error(("bad option '%s' to '%s' (string expected, got nil)"):format(name, fname), 3)
    end
    return true
  end
  if type(v) ~= "string" then
    error(("bad option '%s' to '%s' (string expected, got %s)"):format(name, fname, type(v)), 3)
  end
  if #v < min or #v > max then
    return invalid("%s must be %d to %d characters (got %d)", name, min, max, #v)
  end
  return true
end

-- }======================================================

-- {====================================================== account

--- c:verify() -> { org_id, org_name, tier, key_prefix, webhook_secret (Key), ... }
function Client:verify()
  local org, err = call(self, "GET", "/verify")
  if not org then return nil, err end
  local ok, kerr = util.keep_secret(org, "webhook_secret", "webhook")
  if not ok then return nil, kerr end
  return org
end

-- }======================================================

-- {====================================================== generation

-- Options this module reads; everything else goes in the request body, so
-- fields the API adds later work without a new release.
local CALL_OPTIONS = { wait = true, wait_timeout = true, on_progress = true, timeout = true }

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
local function generation(self, path, opts, fname, idempotent)
  local body = {}
  for k, v in pairs(opts) do
    if not CALL_OPTIONS[k] then body[k] = v end
  end
  local async = body.async
  if async ~= nil and type(async) ~= "boolean" then bad_option("async", fname, "boolean", type(async)) end
  local on_progress = opt(opts, "on_progress", "function", fname)
  local wait = opt(opts, "wait", "boolean", fname)
  local timeout = opt(opts, "timeout", "number", fname)
  local wait_timeout = opt(opts, "wait_timeout", "number", fname)
  local tm = body.timeout_ms
  if tm ~= nil then
    if type(tm) ~= "number" then bad_option("timeout_ms", fname, "number", type(tm)) end
    if tm % 1 ~= 0 or tm < 10000 or tm > 1800000 then
      return invalid("timeout_ms must be an integer from 10000 to 1800000 (got %s)", tostring(tm))
    end
  end
  local key = body.idempotency_key
  if key ~= nil and type(key) ~= "string" then bad_option("idempotency_key", fname, "string", type(key)) end
  if idempotent and key == nil then
    key = bearer.random_hex(16)
    body.idempotency_key = key
  end
  local ropts = { json = body, idempotency_key = key,
                  timeout = timeout or (not async and M.SYNC_TIMEOUT or nil),
                  retry_statuses = not async and SYNC_RETRY_STATUSES or nil }
  local res, err = self.http:request("POST", path, ropts)
  local task
  if res then
    task = util.body(res)
    if res.status == 202 and not async and type(task) == "table" then task.promoted = true end
  elseif says_async(err) then
    -- The 408 form of the sync ceiling: a body naming the task is the
    -- promotion itself; otherwise resubmit asynchronously, same key, so
    -- the API can tell it is the same logical call.
    local doc = json.decode(err.body or "")
    if type(doc) == "table" and doc.task_id then
      task = doc
    else
      body.async = true
      ropts.timeout = timeout
      ropts.retry_statuses = nil
      res, err = self.http:request("POST", path, ropts)
      if not res then return nil, err end
      task = util.body(res)
    end
    task.promoted = true
    if task.status == nil then task.status = "queued" end
  else
    return nil, err
  end
  if wait and type(task) == "table" and task.task_id and not M.TERMINAL[task.status or ""] then
    return self:wait(task.task_id, { timeout = wait_timeout, on_progress = on_progress })
  end
  return task
end

--- c:generate(format, opts) -> result | queued task | nil, err
-- format: "excel", "word" or "slides". opts: the API's body fields
-- (prompt, mode, run_id, init_file, context_files, data_sources,
-- image_assets, brand, async, webhook_url, idempotency_key, file_name,
-- timeout_ms) plus wait, wait_timeout, on_progress, timeout.
function Client:generate(format, opts)
  if type(format) ~= "string" or not M.FORMATS[format] then
    bad_arg(1, "generate", "'excel', 'word' or 'slides'", type(format) == "string" and ("'" .. format .. "'") or type(format))
  end
  if type(opts) ~= "table" then bad_arg(2, "generate", "table", type(opts)) end
  local ok, err = check_text(opts, "prompt", "generate", 1, 10000, true)
  if not ok then return nil, err end
  return generation(self, "/" .. format .. "/generate", opts, "generate", true)
end

--- c:slides_outline(opts): the generation call of /slides/outline.
function Client:slides_outline(opts)
  if type(opts) ~= "table" then bad_arg(1, "slides_outline", "table", type(opts)) end
  local ok, err = check_text(opts, "prompt", "slides_outline", 1, 10000, true)
  if not ok then return nil, err end
  return generation(self, "/slides/outline", opts, "slides_outline", true)
end

--- c:preflight{ format=, prompt=, ... } -> { valid, missing, reason, detected_intents }
function Client:preflight(opts)
  if type(opts) ~= "table" then bad_arg(1, "preflight", "table", type(opts)) end
  local format = opts.format
  if type(format) ~= "string" then bad_option("format", "preflight", "string", type(format)) end
  if not M.FORMATS[format] then return invalid("format must be excel, word or slides (got '%s')", format) end
  local ok, err = check_text(opts, "prompt", "preflight", 1, 10000, true)
  if not ok then return nil, err end
  return call(self, "POST", "/preflight", { json = opts })
end

-- Billable calls without a documented idempotency field: not retried once
-- sent (a retry could bill twice) unless the caller gives a key.
local function billable(self, path, opts, fname)
  local key = opts.idempotency_key
  if key ~= nil and type(key) ~= "string" then bad_option("idempotency_key", fname, "string", type(key)) end
  local body = {}
  for k, v in pairs(opts) do if k ~= "timeout" then body[k] = v end end
  return call(self, "POST", path, { json = body, idempotency_key = key,
                                    timeout = opt(opts, "timeout", "number", fname) })
end

--- c:excel_analyze{ file_id=, prompt= } -> { run_id, answer, tool_calls, ... }
function Client:excel_analyze(opts)
  if type(opts) ~= "table" then bad_arg(1, "excel_analyze", "table", type(opts)) end
  opt(opts, "file_id", "string", "excel_analyze", true)
  local ok, err = check_text(opts, "prompt", "excel_analyze", 1, 5000, true)
  if not ok then return nil, err end
  return billable(self, "/excel/analyze", opts, "excel_analyze")
end
Client.analyze = Client.excel_analyze

--- c:humanize{ text= } -> { text= }
function Client:humanize(opts)
  if type(opts) == "string" then opts = { text = opts } end
  if type(opts) ~= "table" then bad_arg(1, "humanize", "table or string", type(opts)) end
  local ok, err = check_text(opts, "text", "humanize", 1, 20000, true)
  if not ok then return nil, err end
  return billable(self, "/text/humanize", opts, "humanize")
end

--- c:rewrite{ text=, prompt= } -> { text= }
function Client:rewrite(opts)
  if type(opts) ~= "table" then bad_arg(1, "rewrite", "table", type(opts)) end
  local ok, err = check_text(opts, "text", "rewrite", 1, 20000, true)
  if not ok then return nil, err end
  ok, err = check_text(opts, "prompt", "rewrite", 1, 2000, true)
  if not ok then return nil, err end
  return billable(self, "/text/rewrite", opts, "rewrite")
end

--- c:new_content{ prompt=, file_name= } -> { text= }
function Client:new_content(opts)
  if type(opts) ~= "table" then bad_arg(1, "new_content", "table", type(opts)) end
  local ok, err = check_text(opts, "prompt", "new_content", 1, 10000, true)
  if not ok then return nil, err end
  opt(opts, "file_name", "string", "new_content")
  return billable(self, "/text/new-content", opts, "new_content")
end

-- }======================================================

-- {====================================================== tasks and runs

--- c:task(task_id) -> { task_id, run_id, status, phase, progress, result, error }
function Client:task(task_id)
  return call(self, "GET", "/tasks/" .. segment("task", 1, task_id))
end

-- Errors a long wait rides out: the core already retried them, but a
-- blip must not end a half-hour wait.
local TRANSIENT = { connection = true, timeout = true, server = true, rate_limit = true }

--- c:wait(task_id [, { timeout = 1800, on_progress = fn(task) }]) -> task | nil, err
-- Polls /tasks/{id} after 2 s, then every 1.5x longer up to every 10 s,
-- with the client's sleep and clock. A completed task comes back with its
-- result's fields also at the top level (like a sync response).
function Client:wait(task_id, opts)
  local id = segment("wait", 1, task_id)
  opts = check_opts(opts, 2, "wait")
  local timeout = opt(opts, "timeout", "number", "wait") or M.WAIT_TIMEOUT
  local on_progress = opt(opts, "on_progress", "function", "wait")
  local http = self.http
  local function clock() return http:clock() end
  local function sleep(s) return http:sleep(s) end
  local deadline = clock() + timeout
  local delay, task, last_err = M.WAIT_FIRST, nil, nil
  while true do
    local now = clock()
    if now >= deadline then
      local e = errors.new{ kind = "timeout", code = "wait_timeout",
        message = ("task %s not finished after %gs (last status: %s)")
                  :format(task_id, timeout, task and task.status or (last_err and last_err.code) or "unknown"),
        task = task, cause = last_err }
      return nil, e
    end
    local pause = math.min(delay, deadline - now)
    if last_err and last_err.retry_after then pause = math.max(pause, math.min(last_err.retry_after, deadline - now)) end
    sleep(pause)
    local t, err = call(self, "GET", "/tasks/" .. id)
    if t then
      task, last_err = t, nil
      if on_progress then on_progress(t) end
      local status = t.status
      if status == "completed" then
        if type(t.result) == "table" then
          for k, v in pairs(t.result) do if t[k] == nil then t[k] = v end end
        end
        return t
      elseif M.TERMINAL[status] then
        local why = type(t.error) == "table" and t.error.message or nil
        return nil, errors.new{ kind = "task", code = status, task = t,
          message = ("task %s %s%s"):format(task_id, status, why and (": " .. why) or "") }
      end
    elseif TRANSIENT[err.kind] then
      last_err = err
    else
      return nil, err
    end
    delay = math.min(delay * M.WAIT_FACTOR, M.WAIT_MAX)
  end
end

--- c:run(run_id) -> run metadata (with download_url)
function Client:run(run_id)
  return call(self, "GET", "/runs/" .. segment("run", 1, run_id))
end

local function check_limit(q, max)
  local limit = q.limit
  if limit ~= nil and (type(limit) ~= "number" or limit % 1 ~= 0 or limit < 1 or limit > max) then
    return invalid("limit must be an integer from 1 to %d (got %s)", max, tostring(limit))
  end
  return true
end

-- A fetch function for paging over GET `path` with the caller's filters
-- (kept on every page) plus `cursor`.
local function fetcher(self, path, filters, max)
  return function(cursor)
    local q = {}
    for k, v in pairs(filters) do q[k] = v end
    q.cursor = cursor
    local ok, err = check_limit(q, max)
    if not ok then return nil, err end
    return call(self, "GET", path, { query = q })
  end
end

local function list(self, path, filters, fname, n, max)
  filters = check_opts(filters, n, fname)
  local q = util.query(filters, fname, { cursor = true })
  local first = filters.cursor
  if first ~= nil and type(first) ~= "string" then bad_option("cursor", fname, "string", type(first)) end
  return paging.new(fetcher(self, path, q, max or 100), first)
end

--- for run in c:runs{ limit=, status=, format=, cursor= } do … end
-- Lazy, newest first; `:pages()` gives whole pages, `:all()` an array.
function Client:runs(filters)
  return list(self, "/runs", filters, "runs", 1)
end

--- c:runs_page{ limit=, cursor=, ... } -> { data=, next_cursor= } | nil, err
function Client:runs_page(filters)
  filters = check_opts(filters, 1, "runs_page")
  local q = util.query(filters, "runs_page")
  local doc, err = fetcher(self, "/runs", q, 100)(q.cursor)
  if not doc then return nil, err end
  local page = paging.page(doc)
  page.raw = nil
  return page
end

--- c:export(run_id, format) -> { format, download_url, expires_at, ... }
function Client:export(run_id, format)
  local id = segment("export", 1, run_id)
  if type(format) ~= "string" then bad_arg(2, "export", "string", type(format)) end
  if format == "" then return invalid("format must not be empty") end
  return call(self, "POST", "/runs/" .. id .. "/export", { json = { format = format } })
end

-- }======================================================

-- {====================================================== downloads

local function origin(url)
  return url:match("^(https?://[^/?#]+)")
end

-- Resolves a Location header against the URL it answered.
local function resolve(location, base)
  if location:find("^https?://") then return location end
  if location:sub(1, 2) == "//" then return base:match("^(https?:)") .. location end
  if location:sub(1, 1) == "/" then return origin(base) .. location end
  return base:gsub("[?#].*$", ""):gsub("[^/]*$", "") .. location
end

local function filename_of(headers)
  local cd = headers["content-disposition"]
  return cd and (cd:match('filename="([^"]*)"') or cd:match("filename=([^;%s]+)")) or nil
end

local MAX_REDIRECTS = 3

--- c:save(url, path [, { timeout=, max_bytes= }]) -> { path, bytes, content_type, filename }
-- Streams `url` to `path` through a temporary `path.part-<random>`,
-- renamed on success and removed on any failure. The key goes only to the
-- API's own base URL; redirects are followed without it.
function Client:save(url, path, opts)
  if type(url) ~= "string" then bad_arg(1, "save", "string", type(url)) end
  if type(path) ~= "string" then bad_arg(2, "save", "string", type(path)) end
  opts = check_opts(opts, 3, "save")
  local timeout = opt(opts, "timeout", "number", "save")
  local max_bytes = opt(opts, "max_bytes", "number", "save") or M.DOWNLOAD_MAX_BYTES
  local base = self.base_url
  local credentials = url:sub(1, #base + 1) == base .. "/" or url:sub(1, 1) == "/"
  local tmp = path .. ".part-" .. bearer.random_hex(6)
  local hops = 0
  while true do
    local res, err = self.http:request("GET", url, { sink = tmp, credentials = credentials,
                                                      timeout = timeout, max_bytes = max_bytes })
    if res and res.status >= 200 and res.status < 300 then
      local ok, why = os.rename(tmp, path)
      if not ok then
        os.remove(tmp)
        return nil, errors.new{ kind = "config", code = "write_failed",
                                message = "cannot move the download into place: " .. tostring(why) }
      end
      return { path = path, bytes = res.bytes, status = res.status,
               content_type = res.headers["content-type"], filename = filename_of(res.headers) }
    end
    os.remove(tmp)
    if not res then return nil, err end
    local location = res.headers.location
    if res.status < 300 or res.status >= 400 or not location then
      return nil, errors.new{ kind = "server", code = "unexpected_status", status = res.status,
        message = ("download answered HTTP %d without a file"):format(res.status) }
    end
    hops = hops + 1
    if hops > MAX_REDIRECTS then
      return nil, errors.new{ kind = "server", code = "too_many_redirects",
                              message = "download redirected more than " .. MAX_REDIRECTS .. " times" }
    end
    local abs = url:find("^https?://") and url or (base .. url)
    url = resolve(location, abs)
    -- The signed storage URL is a credential of its own: never send ours.
    credentials = false
  end
end

--- c:download(run_id, path [, opts]): the run's artifact, streamed to disk.
function Client:download(run_id, path, opts)
  local id = segment("download", 1, run_id)
  if type(path) ~= "string" then bad_arg(2, "download", "string", type(path)) end
  return self:save("/runs/" .. id .. "/download", path, opts)
end

-- }======================================================

-- {====================================================== files and images

local function file_part(fname, path, opts)
  if type(path) ~= "string" then bad_arg(1, fname, "string", type(path)) end
  local part = { name = "file", file = path }
  part.filename = opt(opts, "filename", "string", fname)
  part.type = opt(opts, "content_type", "string", fname)
  return part
end

local function add_field(form, opts, name, fname)
  local v = opts[name]
  if v == nil then return end
  if type(v) == "table" then
    -- list fields travel as a JSON array string (documented for project
    -- files' tags; the same form is used for images)
    local encoded = json.encode(v)
    form[#form + 1] = { name = name, value = encoded }
    return
  end
  if type(v) ~= "string" and type(v) ~= "number" then bad_option(name, fname, "string", type(v)) end
  form[#form + 1] = { name = name, value = tostring(v) }
end

--- c:upload(path [, { purpose=, filename=, content_type= }]) -> { file_id, ... }
-- Multipart, streamed from disk. purpose: context (default), init, reference.
function Client:upload(path, opts)
  opts = check_opts(opts, 2, "upload")
  local form = { file_part("upload", path, opts) }
  add_field(form, opts, "purpose", "upload")
  return call(self, "POST", "/files", { form = form })
end

--- c:convert(file_id, format) -> { file_id, source_format, format, download_url, expires_at }
function Client:convert(file_id, format)
  local id = segment("convert", 1, file_id)
  if type(format) ~= "string" then bad_arg(2, "convert", "string", type(format)) end
  if format == "" then return invalid("format must not be empty") end
  return call(self, "POST", "/files/" .. id .. "/convert", { form = { { name = "format", value = format } } })
end

--- c:upload_image(path [, { tags = {...}, caption= }]) -> { image_id, ... }
function Client:upload_image(path, opts)
  opts = check_opts(opts, 2, "upload_image")
  local form = { file_part("upload_image", path, opts) }
  add_field(form, opts, "tags", "upload_image")
  add_field(form, opts, "caption", "upload_image")
  return call(self, "POST", "/images", { form = form })
end

--- for image in c:images{ limit=, tag= } do … end
function Client:images(filters)
  return list(self, "/images", filters, "images", 1)
end

function Client:image(image_id)
  return call(self, "GET", "/images/" .. segment("image", 1, image_id))
end

function Client:delete_image(image_id)
  return call(self, "DELETE", "/images/" .. segment("delete_image", 1, image_id))
end

-- }======================================================

-- {====================================================== webhooks

--- c:create_webhook{ url=, events= {...}, description= } -> subscription (secret: Key)
function Client:create_webhook(opts)
  if type(opts) ~= "table" then bad_arg(1, "create_webhook", "table", type(opts)) end
  local url = opt(opts, "url", "string", "create_webhook", true)
  local events = opt(opts, "events", "table", "create_webhook", true)
  opt(opts, "description", "string", "create_webhook")
  if not url:find("^https?://[^/]") then return invalid("url must be an http(s) URL") end
  if #events == 0 then return invalid("events must list at least one event") end
  local body = { url = url, events = events, description = opts.description }
  local hook, err = call(self, "POST", "/webhooks", { json = body })
  if not hook then return nil, err end
  local ok, kerr = util.keep_secret(hook, "secret", "webhook")
  if not ok then return nil, kerr end
  return hook
end

--- for hook in c:webhooks() do … end (no secrets: the API shows them once)
function Client:webhooks(filters)
  return list(self, "/webhooks", filters, "webhooks", 1)
end

function Client:delete_webhook(webhook_id)
  return call(self, "DELETE", "/webhooks/" .. segment("delete_webhook", 1, webhook_id))
end

-- }======================================================

-- {====================================================== projects

--- c:create_project{ name=, description=, tags= } -> project
function Client:create_project(opts)
  if type(opts) ~= "table" then bad_arg(1, "create_project", "table", type(opts)) end
  opt(opts, "name", "string", "create_project", true)
  local body = {}
  for k, v in pairs(opts) do body[k] = v end
  return call(self, "POST", "/projects", { json = body })
end

--- c:attach_file(project_id, path [, { role=, category=, description=, tags= }])
-- Multipart, one file per call; starts the project's analysis.
function Client:attach_file(project_id, path, opts)
  local id = segment("attach_file", 1, project_id)
  opts = check_opts(opts, 3, "attach_file")
  if type(path) ~= "string" then bad_arg(2, "attach_file", "string", type(path)) end
  local form = { file_part("attach_file", path, opts) }
  for _, name in ipairs{ "role", "category", "description", "tags" } do
    add_field(form, opts, name, "attach_file")
  end
  return call(self, "POST", "/projects/" .. id .. "/files", { form = form })
end

--- c:analysis_status(project_id) -> { status, progress, ... }
function Client:analysis_status(project_id)
  return call(self, "GET", "/projects/" .. segment("analysis_status", 1, project_id) .. "/analysis/status")
end

--- for insight in c:insights(project_id, { severity=, kind=, file_id=, resolved= }) do … end
function Client:insights(project_id, filters)
  local id = segment("insights", 1, project_id)
  return list(self, "/projects/" .. id .. "/insights", filters, "insights", 2)
end

--- c:resolve_insight(project_id, insight_id [, { resolved = true, note= }])
function Client:resolve_insight(project_id, insight_id, opts)
  local pid = segment("resolve_insight", 1, project_id)
  local iid = segment("resolve_insight", 2, insight_id)
  opts = check_opts(opts, 3, "resolve_insight")
  local body = { resolved = true }
  for k, v in pairs(opts) do body[k] = v end
  return call(self, "PATCH", "/projects/" .. pid .. "/insights/" .. iid, { json = body })
end

--- c:create_report(project_id [, opts]) -> queued task of the report run
-- (a Word generation: same idempotency, wait and timeout rules).
function Client:create_report(project_id, opts)
  local id = segment("create_report", 1, project_id)
  opts = check_opts(opts, 2, "create_report")
  return generation(self, "/projects/" .. id .. "/reports", opts, "create_report", true)
end

-- }======================================================

return M
