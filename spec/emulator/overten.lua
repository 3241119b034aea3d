-- Overten (real base https://backend.overtenai.com/api/v1), served under
-- /api/v1, plus the "signed storage" host that downloads redirect to
-- (/files-cdn). This file: auth, routing, verify, runs, tasks, storage and
-- the Overten control endpoints. The other endpoints live in overten_gen
-- (generation, text, preflight, export), overten_admin (signup, keys),
-- overten_assets (files, images, projects) and overten_webhooks
-- (subscriptions, signed delivery, the inbox). State: overten_state.
local common = require "common"
local json = require "json"
local S = require "overten_state"
local gen = require "overten_gen"
local admin = require "overten_admin"
local assets = require "overten_assets"
local webhooks = require "overten_webhooks"

local M = {}

M.API_KEY = S.API_KEY

-- Signs /files-cdn URLs. Not a credential: it only makes the "signed storage
-- URL" checkable, like a cloud bucket's query signature.
local STORAGE_SECRET = "emulator-storage-signing"
local URL_LIFETIME = 3600

function M.reset()
  S.reset()
end

------------------------------------------------------------------- auth --

local function unauthorized(message)
  return S.error(401, "invalid_api_key", message)
end

-- X-API-Key is the primary header, "Authorization: Bearer" the legacy one;
-- both are accepted and X-API-Key wins when both are sent. Keys are looked
-- up by SHA-256; a revoked key is gone from the lookup table.
local function authenticate(req)
  local key = req.headers["x-api-key"] or common.bearer_token(req.headers)
  if key == nil then
    return nil, unauthorized("Missing API key: send X-API-Key or Authorization: Bearer.")
  end
  if type(key) ~= "string" or #key ~= 36 or not key:match("^sk_live_%w+$") then
    return nil, unauthorized("Malformed API key.")
  end
  local rec = S.keys_by_hash[common.sha256_hex(key)]
  if not rec or rec.revoked_at ~= json.null then return nil, unauthorized("Invalid or revoked API key.") end
  rec.last_used_at = S.now_iso()
  return { org = S.orgs[rec.org_id], rec = rec, key_prefix = rec.prefix }
end

------------------------------------------------------------ storage URLs --

local function storage_signature(id, expires)
  return common.sha256_hex(STORAGE_SECRET .. ":" .. id .. ":" .. expires)
end

-- A signed /files-cdn URL for a blob id (a run id, or a conversion/export
-- registered in S.blobs).
function S.signed_url(id)
  local expires = ngx.time() + URL_LIFETIME
  return string.format("%s/files-cdn/%s?expires=%d&sig=%s", common.base_url(), id,
                       expires, storage_signature(id, expires)), common.iso(expires, "+00:00")
end

function S.download_url(run)
  if run.status ~= "completed" then return json.null end
  return common.base_url() .. "/api/v1/runs/" .. run.run_id .. "/download"
end

-------------------------------------------------------------- endpoints --

local function verify(req, key)
  local org = key.org
  return common.json(200, {
    org_id = org.org_id, org_name = org.org_name, tier = org.tier,
    key_id = key.rec.key_id, key_prefix = key.key_prefix,
    webhook_secret = org.webhook_secret, credits_balance = org.credits_balance,
    status = org.status,
  })
end

local RUN_FILTERS = { "status", "format" }

-- Newest first, cursor paging; `status` and `format` filter (emulator
-- assumption: the notes name no filters).
local function list_runs(req, key)
  local items = {}
  for _, run in ipairs(S.runs) do
    local keep = S.run_org[run.run_id] == key.org.org_id
    for _, f in ipairs(RUN_FILTERS) do
      local want = req.args[f]
      if want ~= nil and run[f] ~= want then keep = false end
    end
    if keep then items[#items + 1] = run end
  end
  return S.page(req, items, "run_id", 20)
end

local function get_run(req, key, id)
  local run = S.run_of(key.org, id)
  if not run then return S.not_found("Run", id) end
  local view = { download_url = S.download_url(run) }
  for k, v in pairs(run) do view[k] = v end
  return common.json(200, view)
end

local function download(req, key, id)
  local run = S.run_of(key.org, id)
  if not run then return S.not_found("Run", id) end
  if run.status ~= "completed" then
    return S.error(409, "conflict",
                   "Run " .. id .. " has no artifact to download (status: " .. run.status .. ").")
  end
  return common.response(302, "", nil, { Location = (S.signed_url(id)) })
end

function S.task_view(task)
  local run = task.run
  local result, err = json.null, json.null
  if task.status == "completed" then
    result = {
      run_id = run.run_id, download_url = S.download_url(run),
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

-- Tasks move one step per poll (specs never wait for real time); the
-- control API can also move them.
local function get_task(req, key, id)
  local task = S.task_of(key.org, id)
  if not task then return S.not_found("Task", id) end
  local res = common.json(200, S.task_view(task))
  local step = task.steps and table.remove(task.steps, 1)
  if step then S.set_task_state(task, step[1], step[2], step[3]) end
  return res
end

local ROUTES = {
  { "GET", "^/verify$", verify },
  { "GET", "^/runs$", list_runs },
  { "GET", "^/runs/([^/]+)$", get_run },
  { "GET", "^/runs/([^/]+)/download$", download },
  { "GET", "^/tasks/([^/]+)$", get_task },
}
for _, part in ipairs{ gen, admin, assets, webhooks } do
  for _, r in ipairs(part.ROUTES) do ROUTES[#ROUTES + 1] = r end
end

-- Routing happens before auth (as in FastAPI): unknown paths are 404 and
-- wrong methods 405 whatever the credentials. Firebase routes (r[4] == "F")
-- authenticate with a Firebase ID token instead of an API key. A
-- suspended org can still call /verify; everything else is 403.
function M.handle(req)
  local path = req.path:sub(#"/api/v1" + 1)
  local method = req.method == "HEAD" and "GET" or req.method
  local allowed
  for _, r in ipairs(ROUTES) do
    local captures = { path:match(r[2]) }
    if captures[1] then
      if r[1] == method then
        if r[4] == "F" then
          local user, err = admin.authenticate(req)
          if not user then return err end
          return r[3](req, user, unpack(captures))
        end
        local key, err = authenticate(req)
        if not key then return err end
        if key.org.status ~= "active" and r[3] ~= verify then
          return S.error(403, "forbidden", "Organization " .. key.org.org_id .. " is " .. key.org.status .. ".")
        end
        return r[3](req, key, unpack(captures))
      end
      allowed = r[1]
    end
  end
  if allowed then
    return S.error(405, "method_not_allowed", "Method " .. req.method .. " not allowed.", { Allow = allowed })
  end
  return S.error(404, "not_found", "No route for " .. req.method .. " " .. req.path .. ".")
end

-- /files-cdn/{id}?expires=..&sig=..: the storage host downloads redirect
-- to. It needs no credentials, answers like a cloud bucket, and is logged
-- like any other request so specs can check what reached it.
function M.storage(req)
  local id = req.path:match("^/files%-cdn/([^/]+)$")
  local run = id and S.runs_by_id[id]
  local blob = id and S.blobs[id]
  local expires, sig = tonumber(req.args.expires), req.args.sig
  if not (run or blob) or req.method ~= "GET" and req.method ~= "HEAD" then
    return common.response(404, "<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code></Error>",
                           "application/xml")
  end
  if not expires or sig ~= storage_signature(id, req.args.expires) or expires < ngx.time() then
    return common.response(403, "<?xml version='1.0' encoding='UTF-8'?><Error><Code>SignatureDoesNotMatch</Code>"
                           .. "<Message>Invalid or expired signature.</Message></Error>", "application/xml")
  end
  local mime, filename
  if run then
    local format = S.FORMATS[run.format]
    mime, filename = format.mime, run.title .. "." .. format.ext
  else
    mime, filename = blob.mime, blob.filename
  end
  -- Not a real Office file: a zip signature and filler that names the blob.
  local body = "PK\3\4" .. string.rep("bearer emulator artifact " .. id .. "\n", 64)
  return common.response(200, body, mime, {
    ["Content-Disposition"] = 'attachment; filename="' .. filename .. '"',
  })
end

------------------------------------------------------------ control API --

-- /_emulator/overten/... and /_emulator/inbox[/...] (no auth), dispatched
-- here by control.lua.
local function set_org(req, id)
  local org = S.orgs[id]
  if not org then return common.json(404, { ok = false, error = "unknown org " .. id }) end
  local body = json.decode(req.body)
  if type(body) ~= "table" then return common.json(400, { ok = false, error = "body must be a JSON object" }) end
  for _, f in ipairs{ "credits_balance", "status", "tier", "upload_limit" } do
    if body[f] ~= nil then org[f] = body[f] ~= json.null and body[f] or nil end
  end
  return common.json(200, { ok = true, org = { org_id = org.org_id, tier = org.tier, status = org.status,
    credits_balance = org.credits_balance, upload_limit = org.upload_limit or json.null } })
end

local function move_task(req, id)
  local task = S.tasks[id]
  if not task then return common.json(404, { ok = false, error = "unknown task " .. id }) end
  local body = json.decode(req.body)
  local status = type(body) == "table" and body.status
  if not (status == "queued" or status == "running" or S.TERMINAL[status]) then
    return common.json(400, { ok = false, error = "status must be a task state" })
  end
  task.steps = nil
  S.set_task_state(task, status, status == "running" and "building" or json.null,
                   status == "completed" and 100 or task.progress)
  return common.json(200, { ok = true, task = S.task_view(task) })
end

local CONTROL = {
  { "POST", "^/overten/orgs/([^/]+)$", set_org },
  { "POST", "^/overten/tasks/([^/]+)$", move_task },
  { "GET", "^/overten/keys$", function()
      local out = json.array()
      for _, rec in ipairs(S.key_order) do
        out[#out + 1] = { key_id = rec.key_id, org_id = rec.org_id, prefix = rec.prefix,
                          hash = rec.hash, revoked_at = rec.revoked_at }
      end
      return common.json(200, out)
    end },
}
for _, r in ipairs(webhooks.CONTROL) do CONTROL[#CONTROL + 1] = r end

function M.control(req, sub)
  local handler, extra = common.route(CONTROL, req.method, sub)
  if handler then return handler(req, unpack(extra)) end
  if extra then return common.json(405, { ok = false, error = "method not allowed" }, { Allow = extra }) end
  return common.json(404, { ok = false, error = "unknown control endpoint " .. req.path })
end

M.reset()

return M
