-- The Overten emulator's state, shared by its parts (overten.lua and
-- overten_*.lua): orgs, API keys (SHA-256 only), runs, tasks, files,
-- images, webhook subscriptions and projects, all reseeded by reset().
-- Everything is org-scoped: another org's resources answer 404.
local common = require "common"
local json = require "json"

local S = {}

S.API_KEY = "sk_live_0123456789abcdefABCDEF012345"
S.OWNER_UID = "emu_owner"   -- Firebase uid owning the seeded org
S.FAILURE_MARK = "#fail"     -- a prompt containing it makes its task fail
S.SYNC_SECONDS = 90          -- how long an emulated sync job "takes"
S.MIN_BALANCE = 50           -- credits needed before a generation starts

S.FORMATS = {
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
S.FORMAT_NAMES = { "excel", "word", "slides" }

-- Conversion pairs (same table for run export and file convert).
S.CONVERSIONS = {
  xlsx = { "pdf", "csv", "png", "html" }, xls = { "pdf", "csv", "xlsx", "html" },
  docx = { "pdf", "html", "txt", "odt" }, doc = { "pdf", "docx", "html", "txt" },
  pptx = { "pdf", "png", "odp" }, ppt = { "pdf", "pptx", "png" },
}

S.UPLOAD_LIMITS = { free = 10 * 1024 * 1024, pro = 100 * 1024 * 1024, enterprise = 500 * 1024 * 1024 }
S.BALANCES = { free = 500, pro = 5000, enterprise = 50000 }

------------------------------------------------------------------ ids --

local ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

-- Fresh on every reset; ids only need to be unique within one state.
function S.token(n)
  local out = {}
  for i = 1, n do
    local d = S.rand(#ALNUM)
    out[i] = ALNUM:sub(d, d)
  end
  return table.concat(out)
end

function S.id(prefix)
  return prefix .. S.token(20)
end

-- ngx.time is not available while the master loads the modules.
function S.time()
  if ngx.get_phase() == "init" then return os.time() end
  return ngx.time()
end

function S.now_iso()
  return common.iso(S.time(), "+00:00")
end

function S.ulid()
  local ms = ngx.get_phase() == "init" and os.time() * 1000 or math.floor(ngx.now() * 1000)
  return common.ulid(ms, S.rand)
end

----------------------------------------------------------------- keys --

-- Stores a key by SHA-256 only; returns the key record. The raw secret is
-- the caller's to hand out once.
function S.add_key(org, secret, name, key_id)
  local rec = {
    key_id = key_id or S.id("key_"), org_id = org.org_id, name = name or "default",
    prefix = secret:sub(1, 12), hash = common.sha256_hex(secret),
    created_at = S.now_iso(), revoked_at = json.null, last_used_at = json.null,
  }
  S.keys_by_hash[rec.hash] = rec
  S.keys_by_id[rec.key_id] = rec
  S.key_order[#S.key_order + 1] = rec
  return rec
end

function S.new_secret()
  return "sk_live_" .. S.token(28)
end

function S.new_org(fields)
  local org = {
    org_id = fields.org_id or S.id("org_"), org_name = fields.org_name,
    tier = fields.tier or "free", owner = fields.owner,
    webhook_secret = fields.webhook_secret or ("whsec_" .. S.token(32)),
    credits_balance = fields.credits_balance or S.BALANCES[fields.tier or "free"],
    status = "active", created_at = S.now_iso(), idempotency = {},
  }
  S.orgs[org.org_id] = org
  return org
end

----------------------------------------------------------------- runs --

local function first_run(status)
  for _, run in ipairs(S.runs) do
    if run.status == status then return run end
  end
end

-- 120 runs, newest first, a few hours to two days apart, ending at
-- 2026-11-20 16:45 UTC. The newest is still running; about one in ten failed.
local function seed_runs(org)
  local rand = common.prng(20260601)
  local t = common.epoch(2026, 11, 20, 16, 45, 0)
  S.runs, S.runs_by_id = {}, {}
  for i = 1, 120 do
    local format = S.FORMAT_NAMES[rand(3)]
    local titles = S.FORMATS[format].titles
    local status = i == 1 and "running" or (rand(10) == 1 and "failed" or "completed")
    local run = {
      run_id = "run_" .. common.ulid(t * 1000 + rand(1000) - 1, rand),
      format = format, status = status, created_at = common.iso(t, "+00:00"),
      title = titles[rand(#titles)],
      credits_used = status == "completed" and 20 + rand(180) or 0,
    }
    S.runs[i], S.runs_by_id[run.run_id] = run, run
    S.run_org[run.run_id] = org.org_id
    t = t - 3600 * (2 + rand(46))
  end
end

-- A new run at the head of the list (newest first).
function S.add_run(org, format, title)
  local run = { run_id = "run_" .. S.ulid(), format = format, status = "running",
                created_at = S.now_iso(), title = title, credits_used = 0 }
  table.insert(S.runs, 1, run)
  S.runs_by_id[run.run_id] = run
  S.run_org[run.run_id] = org.org_id
  return run
end

function S.run_of(org, id)
  local run = S.runs_by_id[id]
  if run and S.run_org[id] == org.org_id then return run end
end

---------------------------------------------------------------- tasks --

-- Tasks have readable fixed IDs so specs can name them. One task per state,
-- plus task_emu_progress, which advances one step on every poll.
local function seed_tasks(org)
  local running, done, failed = S.runs[1], first_run("completed"), first_run("failed")
  local function task(id, run, status, phase, progress)
    return { task_id = id, run = run, status = status, phase = phase or json.null,
             progress = progress, org_id = org.org_id }
  end
  S.tasks = {
    task_emu_queued = task("task_emu_queued", running, "queued", nil, 0),
    task_emu_running = task("task_emu_running", running, "running", "building", 42),
    task_emu_completed = task("task_emu_completed", done, "completed", nil, 100),
    task_emu_failed = task("task_emu_failed", failed, "failed", nil, 37),
    task_emu_cancelled = task("task_emu_cancelled", done, "cancelled", nil, 12),
    task_emu_expired = task("task_emu_expired", done, "expired", nil, 0),
    task_emu_progress = task("task_emu_progress", done, "queued", nil, 0),
  }
  S.tasks.task_emu_progress.steps = {
    { "running", "planning", 25 }, { "running", "building", 60 },
    { "running", "rendering", 90 }, { "completed", json.null, 100 },
  }
end

S.TERMINAL = { completed = true, failed = true, cancelled = true, expired = true }

-- Called when a generated task reaches a terminal state (by poll, by the
-- control API, or at once for a sync call); set by overten_gen.
S.on_terminal = function() end

function S.set_task_state(task, status, phase, progress)
  local was = task.status
  task.status, task.phase, task.progress = status, phase or json.null, progress or task.progress
  if S.TERMINAL[status] and not S.TERMINAL[was] then S.on_terminal(task) end
end

function S.task_of(org, id)
  local task = S.tasks[id]
  if task and task.org_id == org.org_id then return task end
end

------------------------------------------------------------ responses --

function S.error(status, code, message, headers)
  return common.error("overten", status, code, message, headers)
end

function S.bad_request(message) return S.error(400, "invalid_request", message) end

function S.not_found(what, id)
  return S.error(404, "not_found", what .. " " .. tostring(id) .. " not found.")
end

-- FastAPI's 422 for one field of the body.
function S.unprocessable(field, msg, typ)
  return common.json(422, { detail = { { loc = { "body", field }, msg = msg,
                                          type = typ or "value_error" } } })
end

-- The JSON object body, or nil and a FastAPI-style 422.
function S.json_body(req)
  if req.body == "" then return {} end
  local doc = json.decode(req.body)
  if type(doc) ~= "table" then
    return nil, common.json(422, { detail = { { loc = { "body" }, msg = "Input should be a valid JSON object",
                                                type = "json_invalid" } } })
  end
  return doc
end

-- A string field within [min, max] characters (nil allowed unless required);
-- returns the value or nil and a 422.
function S.text(body, field, min, max, required)
  local v = body[field]
  if v == nil or v == json.null then
    if required then return nil, S.unprocessable(field, "Field required", "missing") end
    return nil
  end
  if type(v) ~= "string" then return nil, S.unprocessable(field, "Input should be a valid string", "string_type") end
  if #v < min then
    return nil, S.unprocessable(field, "String should have at least " .. min .. " characters", "string_too_short")
  end
  if max and #v > max then
    return nil, S.unprocessable(field, "String should have at most " .. max .. " characters", "string_too_long")
  end
  return v
end

-- A page of `items` (already filtered) after the item whose `id_field` is
-- named by the opaque cursor; returns the response or an error response.
function S.page(req, items, id_field, default_limit)
  local b64 = require "ngx.base64"
  local limit, err = common.int_arg(req.args, "limit", default_limit or 20, 1, 100)
  if not limit then return S.bad_request(err) end
  local start = 1
  local cursor = req.args.cursor
  if cursor ~= nil then
    local last = type(cursor) == "string" and b64.decode_base64url(cursor)
    local id = last and last:match("^after:(.+)$")
    local found
    for i, item in ipairs(items) do
      if item[id_field] == id then found = i end
    end
    if not found then return S.bad_request("Invalid cursor.") end
    start = found + 1
  end
  local page = json.array()
  for i = start, math.min(start + limit - 1, #items) do page[#page + 1] = items[i] end
  local next_cursor = json.null
  if start + limit <= #items then
    next_cursor = b64.encode_base64url("after:" .. page[#page][id_field])
  end
  return common.json(200, { data = page, next_cursor = next_cursor })
end

---------------------------------------------------------------- reset --

function S.reset()
  S.rand = common.prng(424242)
  S.orgs, S.keys_by_hash, S.keys_by_id, S.key_order = {}, {}, {}, {}
  S.run_org = {}
  local org = S.new_org{ org_id = "org_test", org_name = "Test Org", tier = "pro",
                         owner = S.OWNER_UID, credits_balance = 5000,
                         webhook_secret = "whsec_emu_5f3c9a7e1b2d4f6a8c0e2b4d6f8a0c1e" }
  S.test_org = org
  S.add_key(org, S.API_KEY, "default", "key_test")
  seed_runs(org)
  seed_tasks(org)
  S.files, S.images, S.image_order, S.webhooks, S.webhook_order = {}, {}, {}, {}, {}
  S.projects, S.blobs = {}, {}
  S.inbox, S.deliveries = {}, {}
end

return S
