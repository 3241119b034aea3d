-- Overten (real base https://backend.overtenai.com/api/v1), served under
-- /api/v1, plus the "signed storage" host that run downloads redirect to
-- (/files-cdn). State is seeded deterministically by M.reset().
local common = require "common"
local json = require "json"
local b64 = require "ngx.base64"

local M = {}

M.API_KEY = "sk_live_0123456789abcdefABCDEF012345"

local ORG = {
  org_id = "org_test", org_name = "Test Org", tier = "pro", key_id = "key_test",
  webhook_secret = "whsec_emu_5f3c9a7e1b2d4f6a8c0e2b4d6f8a0c1e",
  credits_balance = 5000, status = "active",
}

-- Keys are stored only as SHA-256 hex, as the real service does; the raw key
-- is kept nowhere in the emulator's state.
local KEYS = {
  [common.sha256_hex(M.API_KEY)] = { org = ORG, key_prefix = M.API_KEY:sub(1, 12) },
}

-- Signs /files-cdn URLs. Not a credential: it only makes the "signed storage
-- URL" checkable, like a cloud bucket's query signature.
local STORAGE_SECRET = "emulator-storage-signing"
local URL_LIFETIME = 3600

local FORMATS = {
  excel = {
    ext = "xlsx",
    mime = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    titles = { "Q3 revenue forecast", "SaaS metrics dashboard", "Hiring plan 2026",
               "Cash-flow model", "Inventory reconciliation", "Marketing budget tracker" },
  },
  word = {
    ext = "docx",
    mime = "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    titles = { "Vendor contract summary", "Quarterly board memo", "Onboarding handbook",
               "Incident post-mortem", "Grant proposal draft", "Product requirements" },
  },
  slides = {
    ext = "pptx",
    mime = "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    titles = { "Investor update deck", "Sales kickoff", "Roadmap review",
               "Customer QBR", "Brand refresh pitch", "All-hands slides" },
  },
}
local FORMAT_NAMES = { "excel", "word", "slides" }

local runs, runs_by_id, tasks

--------------------------------------------------------------------- seed --

-- 120 runs, newest first, a few hours to two days apart, ending at
-- 2026-11-20 16:45 UTC. The newest is still running; about one in ten failed.
local function seed_runs()
  local rand = common.prng(20260601)
  local t = common.epoch(2026, 11, 20, 16, 45, 0)
  runs, runs_by_id = {}, {}
  for i = 1, 120 do
    local format = FORMAT_NAMES[rand(3)]
    local titles = FORMATS[format].titles
    local status = i == 1 and "running" or (rand(10) == 1 and "failed" or "completed")
    local run = {
      run_id = "run_" .. common.ulid(t * 1000 + rand(1000) - 1, rand),
      format = format, status = status, created_at = common.iso(t, "+00:00"),
      title = titles[rand(#titles)],
      credits_used = status == "completed" and 20 + rand(180) or 0,
    }
    runs[i], runs_by_id[run.run_id] = run, run
    t = t - 3600 * (2 + rand(46))
  end
end

local function first_run(status)
  for _, run in ipairs(runs) do
    if run.status == status then return run end
  end
end

-- Tasks have readable fixed IDs so specs can name them. One task per state,
-- plus task_emu_progress, which advances one step on every poll.
local function seed_tasks()
  local running, done, failed = runs[1], first_run("completed"), first_run("failed")
  local function task(id, run, status, phase, progress)
    return { task_id = id, run = run, status = status, phase = phase or json.null,
             progress = progress }
  end
  tasks = {
    task_emu_queued = task("task_emu_queued", running, "queued", nil, 0),
    task_emu_running = task("task_emu_running", running, "running", "building", 42),
    task_emu_completed = task("task_emu_completed", done, "completed", nil, 100),
    task_emu_failed = task("task_emu_failed", failed, "failed", nil, 37),
    task_emu_cancelled = task("task_emu_cancelled", done, "cancelled", nil, 12),
    task_emu_expired = task("task_emu_expired", done, "expired", nil, 0),
    task_emu_progress = task("task_emu_progress", done, "queued", nil, 0),
  }
  tasks.task_emu_progress.steps = {
    { "running", "planning", 25 }, { "running", "building", 60 },
    { "running", "rendering", 90 }, { "completed", json.null, 100 },
  }
end

function M.reset()
  seed_runs()
  seed_tasks()
end

------------------------------------------------------------------- auth --

local function unauthorized(message)
  return common.error("overten", 401, "invalid_api_key", message)
end

-- X-API-Key is the primary header, "Authorization: Bearer" the legacy one;
-- both are accepted and X-API-Key wins when both are sent.
local function authenticate(req)
  local key = req.headers["x-api-key"] or common.bearer_token(req.headers)
  if key == nil then
    return nil, unauthorized("Missing API key: send X-API-Key or Authorization: Bearer.")
  end
  if type(key) ~= "string" or #key ~= 36 or not key:match("^sk_live_%w+$") then
    return nil, unauthorized("Malformed API key.")
  end
  local found = KEYS[common.sha256_hex(key)]
  if not found then return nil, unauthorized("Invalid or revoked API key.") end
  return found
end

-------------------------------------------------------------- endpoints --

local function bad_request(message)
  return common.error("overten", 400, "invalid_request", message)
end

local function not_found(what, id)
  return common.error("overten", 404, "not_found", what .. " " .. id .. " not found.")
end

local function download_url(run)
  if run.status ~= "completed" then return json.null end
  return common.base_url() .. "/api/v1/runs/" .. run.run_id .. "/download"
end

local function verify(req, key)
  local org = key.org
  return common.json(200, {
    org_id = org.org_id, org_name = org.org_name, tier = org.tier,
    key_id = org.key_id, key_prefix = key.key_prefix,
    webhook_secret = org.webhook_secret, credits_balance = org.credits_balance,
    status = org.status,
  })
end

-- The cursor is opaque to clients: base64url of the last run_id returned,
-- so pages stay stable if runs were ever added at the head.
local function list_runs(req)
  local limit, err = common.int_arg(req.args, "limit", 20, 1, 100)
  if not limit then return bad_request(err) end
  local start = 1
  local cursor = req.args.cursor
  if cursor ~= nil then
    local last = type(cursor) == "string" and b64.decode_base64url(cursor)
    local run = last and runs_by_id[last:match("^after:(.+)$") or ""]
    if not run then return bad_request("Invalid cursor.") end
    for i, r in ipairs(runs) do
      if r == run then start = i + 1 end
    end
  end
  local page = json.array()
  for i = start, math.min(start + limit - 1, #runs) do page[#page + 1] = runs[i] end
  local next_cursor = json.null
  if start + limit <= #runs then
    next_cursor = b64.encode_base64url("after:" .. page[#page].run_id)
  end
  return common.json(200, { data = page, next_cursor = next_cursor })
end

local function get_run(req, key, id)
  local run = runs_by_id[id]
  if not run then return not_found("Run", id) end
  local view = { download_url = download_url(run) }
  for k, v in pairs(run) do view[k] = v end
  return common.json(200, view)
end

local function storage_signature(id, expires)
  return common.sha256_hex(STORAGE_SECRET .. ":" .. id .. ":" .. expires)
end

local function download(req, key, id)
  local run = runs_by_id[id]
  if not run then return not_found("Run", id) end
  if run.status ~= "completed" then
    return common.error("overten", 409, "conflict",
                        "Run " .. id .. " has no artifact to download (status: " .. run.status .. ").")
  end
  local expires = ngx.time() + URL_LIFETIME
  local location = string.format("%s/files-cdn/%s?expires=%d&sig=%s", common.base_url(), id,
                                 expires, storage_signature(id, expires))
  return common.response(302, "", nil, { Location = location })
end

local function task_view(task)
  local run = task.run
  local result, err = json.null, json.null
  if task.status == "completed" then
    result = {
      run_id = run.run_id, download_url = download_url(run),
      edit_url = common.base_url() .. "/api/v1/edit/" .. run.run_id .. "?token=emu_edit_token",
      summary = "Built the " .. run.format .. " document \"" .. run.title .. "\".",
      credits_used = run.credits_used, duration_ms = 95000 + run.credits_used * 731,
    }
  elseif task.status == "failed" then
    err = { code = "upstream_error", message = "The rendering pipeline failed." }
  end
  return { task_id = task.task_id, run_id = run.run_id, status = task.status,
           phase = task.phase, progress = task.progress, result = result, error = err }
end

local function get_task(req, key, id)
  local task = tasks[id]
  if not task then return not_found("Task", id) end
  local res = common.json(200, task_view(task))
  local step = task.steps and table.remove(task.steps, 1)
  if step then task.status, task.phase, task.progress = step[1], step[2], step[3] end
  return res
end

local ROUTES = {
  { "GET", "^/verify$", verify },
  { "GET", "^/runs$", list_runs },
  { "GET", "^/runs/([^/]+)$", get_run },
  { "GET", "^/runs/([^/]+)/download$", download },
  { "GET", "^/tasks/([^/]+)$", get_task },
}

-- Routing happens before auth (as in FastAPI): unknown paths are 404 and
-- wrong methods 405 whatever the credentials.
function M.handle(req)
  local path = req.path:sub(#"/api/v1" + 1)
  local handler, extra = common.route(ROUTES, req.method, path)
  if not handler then
    if extra then
      return common.error("overten", 405, "method_not_allowed",
                          "Method " .. req.method .. " not allowed.", { Allow = extra })
    end
    return common.error("overten", 404, "not_found", "No route for " .. req.method .. " " .. req.path .. ".")
  end
  local key, err = authenticate(req)
  if not key then return err end
  return handler(req, key, unpack(extra))
end

-- /files-cdn/{run_id}?expires=..&sig=..: the storage host a download
-- redirects to. It needs no credentials, answers like a cloud bucket, and is
-- logged like any other request so specs can check what reached it.
function M.storage(req)
  local id = req.path:match("^/files%-cdn/([^/]+)$")
  local run = id and runs_by_id[id]
  local expires, sig = tonumber(req.args.expires), req.args.sig
  if not run or req.method ~= "GET" and req.method ~= "HEAD" then
    return common.response(404, "<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code></Error>",
                           "application/xml")
  end
  if not expires or sig ~= storage_signature(id, req.args.expires) or expires < ngx.time() then
    return common.response(403, "<?xml version='1.0' encoding='UTF-8'?><Error><Code>SignatureDoesNotMatch</Code>"
                           .. "<Message>Invalid or expired signature.</Message></Error>", "application/xml")
  end
  local format = FORMATS[run.format]
  -- Not a real Office file: a zip signature and filler that names the run.
  local body = "PK\3\4" .. string.rep("bearer emulator artifact " .. id .. "\n", 64)
  return common.response(200, body, format.mime, {
    ["Content-Disposition"] = 'attachment; filename="' .. run.title .. "." .. format.ext .. '"',
  })
end

M.reset()

return M
