-- Overten generation and the other billable calls: /{excel,word,slides}/generate,
-- /slides/outline, /projects/{id}/reports (via run_generation), /preflight,
-- /excel/analyze, /text/*, and /runs/{id}/export.
--
-- Generated tasks walk queued -> running (planning, building, rendering)
-- -> completed, one step per GET /tasks/{id}; a prompt containing "#fail"
-- ends failed instead. A sync call completes at once, unless the
-- `sync_ceiling` config switch is below the emulated job length (90 s):
-- then it is promoted to 202, as the real API does at 300 s.
local common = require "common"
local json = require "json"
local S = require "overten_state"

local M = {}

local function config()
  local control = package.loaded.control
  return control and control.config or {}
end

------------------------------------------------------------- preflight --

-- What a prompt asks for, by keyword (the real validator is an LLM).
local INTENTS = {
  { "visual_first", { "image", "photo", "screenshot", "picture", "logo" }, "image_assets", "images" },
  { "data_heavy", { "csv", "dataset", "spreadsheet data" }, "data_sources", "data_sources" },
  { "financial_model", { "forecast", "financial model", "dcf" } },
}

local function nonempty(v) return type(v) == "table" and next(v) ~= nil end

-- The preflight verdict for a generation body.
function M.preflight_verdict(body)
  local prompt = (body.prompt or ""):lower()
  local intents, missing, reasons = json.array(), json.array(), {}
  for _, intent in ipairs(INTENTS) do
    for _, word in ipairs(intent[2]) do
      if prompt:find(word, 1, true) then
        intents[#intents + 1] = intent[1]
        if intent[3] and not nonempty(body[intent[3]]) then
          missing[#missing + 1] = intent[4]
          reasons[#reasons + 1] = ("Prompt mentions '%s' but no %s were provided."):format(word, intent[3])
        end
        break
      end
    end
  end
  return { valid = #missing == 0, missing = missing, detected_intents = intents,
           reason = #reasons > 0 and table.concat(reasons, " ") or json.null }
end

-- Common checks of the generation schema; nil or an error response.
local function check_body(body, org)
  local prompt, err = S.text(body, "prompt", 1, 10000, true)
  if not prompt then return err end
  if body.mode ~= nil and body.mode ~= "action" and body.mode ~= "ask" then
    return S.unprocessable("mode", "Input should be 'action' or 'ask'", "enum")
  end
  if body.async ~= nil and type(body.async) ~= "boolean" then
    return S.unprocessable("async", "Input should be a valid boolean", "bool_type")
  end
  local tm = body.timeout_ms
  if tm ~= nil and tm ~= json.null and (type(tm) ~= "number" or tm < 10000 or tm > 1800000) then
    return S.unprocessable("timeout_ms", "Input should be between 10000 and 1800000", "less_than_equal")
  end
  for _, f in ipairs{ "init_file" } do
    local id = body[f]
    if type(id) == "string" and not (S.files[id] and S.files[id].org_id == org.org_id) then
      return S.not_found("File", id)
    end
  end
  for _, list in ipairs{ "context_files", "data_sources", "image_assets" } do
    if type(body[list]) == "table" then
      for _, item in ipairs(body[list]) do
        local id = type(item) == "table" and (item.file_id or item.image_id) or item
        local store = list == "image_assets" and S.images or S.files
        if type(id) ~= "string" or not (store[id] and store[id].org_id == org.org_id) then
          return S.not_found(list == "image_assets" and "Image" or "File", tostring(id))
        end
      end
    end
  end
end

------------------------------------------------------------ generation --

local function completed_body(task)
  local view = S.task_view(task)
  local body = view.result
  body.task_id, body.status = task.task_id, "completed"
  return body
end

-- The task reached a terminal state: settle the run, charge, notify.
S.on_terminal = function(task)
  local run = task.run
  if not task.generated then return end
  if task.status == "completed" then
    run.status = "completed"
    run.credits_used = run.credits_used + task.cost
    local org = S.orgs[task.org_id]
    org.credits_balance = org.credits_balance - task.cost
  elseif task.status == "failed" then
    run.status = "failed"
  else
    run.status = task.status
  end
  local webhooks = require "overten_webhooks"
  webhooks.task_finished(task)
end

-- Creates (or resumes) the run and its task.
local function start(org, format, body)
  local run
  if type(body.run_id) == "string" then
    run = S.run_of(org, body.run_id)
    run.status = "running"
  else
    local title = body.file_name ~= nil and body.file_name ~= json.null and tostring(body.file_name)
                  or body.prompt:sub(1, 60)
    run = S.add_run(org, format, title)
  end
  local fails = body.prompt:find(S.FAILURE_MARK, 1, true) ~= nil
  local task = {
    task_id = "task_" .. S.ulid(), run = run, status = "queued", phase = json.null, progress = 0,
    org_id = org.org_id, generated = true, cost = 20 + #body.prompt % 100,
    webhook_url = type(body.webhook_url) == "string" and body.webhook_url or nil,
    steps = { { "running", "planning", 25 }, { "running", "building", 60 },
              { "running", "rendering", 90 },
              fails and { "failed", json.null, 90 } or { "completed", json.null, 100 } },
  }
  S.tasks[task.task_id] = task
  return task
end

local PROMOTED = "Sync ceiling (300s) exceeded; continuing asynchronously."

-- The shared generation flow. `force_async` for endpoints that only queue.
function M.run_generation(req, key, format, body, force_async, extra)
  local org = key.org
  local err = check_body(body, org)
  if err then return err end
  -- Idempotency: same key and same request -> the first answer again; same
  -- key, other request -> 409. `async` is not part of the comparison, so a
  -- call resubmitted asynchronously after a sync 408 stays the same call.
  local ikey = type(body.idempotency_key) == "string" and body.idempotency_key or nil
  local fingerprint
  if ikey then
    local copy = {}
    for k, v in pairs(body) do copy[k] = v end
    copy.async, copy.idempotency_key = nil, nil
    fingerprint = req.path .. " " .. json.encode(copy)
    local seen = org.idempotency[ikey]
    if seen then
      if seen.fingerprint ~= fingerprint then
        return S.error(409, "conflict", "Idempotency key " .. ikey .. " was used for another request.")
      end
      return common.response(seen.status, seen.body, "application/json", { ["Idempotent-Replayed"] = "true" })
    end
  end
  if org.credits_balance < S.MIN_BALANCE then
    return S.error(402, "insufficient_credits", ("Insufficient credits. Required: %d, balance: %d.")
                   :format(S.MIN_BALANCE, org.credits_balance))
  end
  if type(body.run_id) == "string" and not S.run_of(org, body.run_id) then
    return S.not_found("Run", body.run_id)
  end
  local verdict = M.preflight_verdict(body)
  if not verdict.valid then
    return common.json(400, { success = false, error = "preflight_failed",
      message = "Preflight failed: missing " .. table.concat(verdict.missing, ", ") .. ".",
      missing = verdict.missing, reason = verdict.reason, detected_intents = verdict.detected_intents })
  end
  local task = start(org, format, body)
  local res
  local ceiling = config().sync_ceiling
  if force_async or body.async == true then
    res = common.json(202, { run_id = task.run.run_id, task_id = task.task_id, status = "queued" })
  elseif ceiling and S.SYNC_SECONDS > ceiling then
    res = common.json(202, { run_id = task.run.run_id, task_id = task.task_id, status = "queued",
                             message = PROMOTED })
  else
    local last = task.steps[#task.steps]
    task.steps = nil
    S.set_task_state(task, last[1], last[2], last[3])
    if task.status == "failed" then
      res = S.error(502, "upstream_error", "The rendering pipeline failed.")
    else
      local out = completed_body(task)
      for k, v in pairs(extra or {}) do out[k] = v end
      res = common.json(200, out)
    end
  end
  if ikey then
    org.idempotency[ikey] = { fingerprint = fingerprint, status = res.status, body = res.body }
  end
  return res
end

local function generate(format)
  return function(req, key)
    local body, err = S.json_body(req)
    if not body then return err end
    return M.run_generation(req, key, format, body)
  end
end

local function outline(req, key)
  local body, err = S.json_body(req)
  if not body then return err end
  local topic = type(body.prompt) == "string" and body.prompt:sub(1, 40) or ""
  return M.run_generation(req, key, "slides", body, false, {
    outline = { { title = "Introduction: " .. topic, bullets = { "Context", "Goals" } },
                { title = "Findings", bullets = { "What we learned", "Numbers" } },
                { title = "Next steps", bullets = { "Owners", "Dates" } } },
  })
end

local function preflight(req, key)
  local body, err = S.json_body(req)
  if not body then return err end
  if body.format ~= "excel" and body.format ~= "word" and body.format ~= "slides" then
    return S.unprocessable("format", "Input should be 'excel', 'word' or 'slides'", "enum")
  end
  local _, perr = S.text(body, "prompt", 1, 10000, true)
  if perr then return perr end
  return common.json(200, M.preflight_verdict(body))
end

---------------------------------------------------- analyze and text --

local function charge(org, credits)
  if org.credits_balance < S.MIN_BALANCE then
    return S.error(402, "insufficient_credits", ("Insufficient credits. Required: %d, balance: %d.")
                   :format(S.MIN_BALANCE, org.credits_balance))
  end
  org.credits_balance = org.credits_balance - credits
end

local SHEETS = { xlsx = true, xls = true, csv = true }

local function analyze(req, key)
  local body, err = S.json_body(req)
  if not body then return err end
  local file_id
  file_id, err = S.text(body, "file_id", 1, nil, true)
  if not file_id then return err end
  local prompt
  prompt, err = S.text(body, "prompt", 1, 5000, true)
  if not prompt then return err end
  local file = S.files[file_id]
  if not file or file.org_id ~= key.org.org_id then return S.not_found("File", file_id) end
  if not SHEETS[file.ext] then
    return S.bad_request("File " .. file_id .. " is not a spreadsheet (.xlsx, .xls or .csv).")
  end
  err = charge(key.org, 12)
  if err then return err end
  return common.json(200, { run_id = S.id("analyze_"), tool_calls = 3, duration_ms = 8421, credits_used = 12,
    answer = ("**%s** (%d bytes): the answer to \"%s\" is in column B."):format(file.filename, file.size, prompt) })
end

local function text_helper(kind)
  return function(req, key)
    local body, err = S.json_body(req)
    if not body then return err end
    local text, prompt
    if kind == "new-content" then
      prompt, err = S.text(body, "prompt", 1, 10000, true)
      if not prompt then return err end
      local _, ferr = S.text(body, "file_name", 1, 255)
      if ferr then return ferr end
      text = "New content for: " .. prompt
    else
      text, err = S.text(body, "text", 1, 20000, true)
      if not text then return err end
      if kind == "rewrite" then
        prompt, err = S.text(body, "prompt", 1, 2000, true)
        if not prompt then return err end
        text = text .. " (rewritten: " .. prompt .. ")"
      else
        text = text:gsub("utilize", "use"):gsub("In order to", "To")
      end
    end
    err = charge(key.org, 2)
    if err then return err end
    return common.json(200, { text = text, credits_used = 2 })
  end
end

---------------------------------------------------------------- export --

local function valid_targets(ext)
  return table.concat(S.CONVERSIONS[ext] or {}, ", ")
end

function M.convertible(ext, target)
  for _, t in ipairs(S.CONVERSIONS[ext] or {}) do
    if t == target then return true end
  end
  return false
end

-- JSON {"format": ...} (conversions guide) or ?format= (one stored runs
-- page); both accepted.
local function export(req, key, id)
  local body, err = S.json_body(req)
  if not body then return err end
  local format = body.format or req.args.format
  if type(format) ~= "string" or format == "" then
    return S.unprocessable("format", "Field required", "missing")
  end
  local run = S.run_of(key.org, id)
  if not run then return S.not_found("Run", id) end
  if run.status ~= "completed" then
    return S.error(409, "conflict", "Run " .. id .. " cannot be exported (status: " .. run.status .. ").")
  end
  local ext = S.FORMATS[run.format].ext
  if not M.convertible(ext, format) then
    return S.bad_request(("Cannot convert %s to %s. Valid targets: %s."):format(ext, format, valid_targets(ext)))
  end
  local blob_id = "exp_" .. run.run_id .. "_" .. format
  S.blobs[blob_id] = { mime = "application/octet-stream", filename = run.title .. "." .. format }
  local url, expires = S.signed_url(blob_id)
  return common.json(200, { run_id = run.run_id, source_format = ext, format = format,
                            download_url = url, expires_at = expires })
end
M.valid_targets = valid_targets

M.ROUTES = {
  { "POST", "^/excel/generate$", generate("excel") },
  { "POST", "^/word/generate$", generate("word") },
  { "POST", "^/slides/generate$", generate("slides") },
  { "POST", "^/slides/outline$", outline },
  { "POST", "^/preflight$", preflight },
  { "POST", "^/excel/analyze$", analyze },
  { "POST", "^/text/humanize$", text_helper("humanize") },
  { "POST", "^/text/rewrite$", text_helper("rewrite") },
  { "POST", "^/text/new%-content$", text_helper("new-content") },
  { "POST", "^/runs/([^/]+)/export$", export },
}

return M
