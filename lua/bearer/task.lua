--- bearer.task: work an API runs as a task, submitted and waited for.
--
-- submit: one call that the API answers either with the result (sync)
-- or with a queued task (202 Accepted, or a timeout status that names
-- the sync ceiling): "promotion". The idempotency key is made once per
-- logical call and reused by every retry and by the resubmission, so the
-- API can tell it is the same call.
-- wait: polls a task until it reaches a terminal status, with growing
-- pauses on the client's clock and sleep, riding out transient failures.
-- Usable by any API with that shape; the API module passes its rules.
local bearer = require "bearer"
local errors = require "bearer.error"
local json = require "bearer.json"

local M = {}

-- Errors a long wait rides out: the client already retried them, but a
-- blip must not end a half-hour wait.
local TRANSIENT = { connection = true, timeout = true, server = true, rate_limit = true }

--- submit(http, path, body, rules) -> result | queued task | nil, err
-- rules: async (boolean: ask for a task at once), idempotent (make a
-- key when the body has none), key_field (the body field of that key),
-- timeout (this call's), sync_timeout (per attempt when sync),
-- sync_retry_statuses, says_async(err) (whether a failure is the sync
-- ceiling asking for async), async_field (the body field asking for it).
---@param http bearer.Client
---@param path string
---@param body table
---@param rules table (above)
---@return table|nil result
---@return bearer.Error|nil err
function M.submit(http, path, body, rules)
  local key_field = rules.key_field or "idempotency_key"
  local key = body[key_field]
  if rules.idempotent and key == nil then
    key = bearer.random_hex(16)
    body[key_field] = key
  end
  local async = rules.async
  local ropts = { json = body, idempotency_key = key,
                  timeout = rules.timeout or (not async and rules.sync_timeout or nil),
                  retry_statuses = not async and rules.sync_retry_statuses or nil }
  local res, err = http:request("POST", path, ropts)
  local task
  if res then
    task = res.json ~= nil and res.json or true
    if res.status == 202 and not async and type(task) == "table" then task.promoted = true end
    return task
  end
  if not (rules.says_async and rules.says_async(err)) then return nil, err end
  -- The sync ceiling: a body naming the task is the promotion itself;
  -- otherwise resubmit asynchronously, same key.
  local doc = json.decode(err.body or "")
  if type(doc) == "table" and doc.task_id then
    task = doc
  else
    body[rules.async_field or "async"] = true
    ropts.timeout = rules.timeout
    ropts.retry_statuses = nil
    res, err = http:request("POST", path, ropts)
    if not res then return nil, err end
    task = res.json
    if type(task) ~= "table" then
      return nil, errors.new{ kind = "decode", code = "unexpected_response", status = res.status,
                              message = "the queued task's response is not a JSON object" }
    end
  end
  task.promoted = true
  if task.status == nil then task.status = "queued" end
  return task
end

--- wait(http, rules) -> task | nil, err
-- rules: fetch() -> task | nil, err (one poll); id (for messages);
-- timeout (seconds); on_progress(task); first, factor, max (the pauses:
-- the first, how they grow, the longest); terminal (set of statuses);
-- success (the status that ends well); merge (a field whose table's
-- entries are copied to the top level of a successful task).
-- A failed terminal status is a `task` error whose code is the status.
---@param http bearer.Client
---@param rules table (above)
---@return table|nil result
---@return bearer.Error|nil err
function M.wait(http, rules)
  local clock = function() return http:clock() end
  local deadline = clock() + rules.timeout
  local delay, task, last_err = rules.first, nil, nil
  while true do
    local now = clock()
    if now >= deadline then
      return nil, errors.new{ kind = "timeout", code = "wait_timeout",
        message = ("task %s not finished after %gs (last status: %s)")
                  :format(rules.id, rules.timeout,
                          task and task.status or (last_err and last_err.code) or "unknown"),
        task = task, cause = last_err }
    end
    local pause = math.min(delay, deadline - now)
    if last_err and last_err.retry_after then
      pause = math.max(pause, math.min(last_err.retry_after, deadline - now))
    end
    http:sleep(pause)
    local t, err = rules.fetch()
    if t then
      task, last_err = t, nil
      if rules.on_progress then rules.on_progress(t) end
      local status = t.status
      if status == rules.success then
        local extra = rules.merge and t[rules.merge]
        if type(extra) == "table" then
          for k, v in pairs(extra) do if t[k] == nil then t[k] = v end end
        end
        return t
      elseif rules.terminal[status] then
        local why = type(t.error) == "table" and t.error.message or nil
        return nil, errors.new{ kind = "task", code = status, task = t,
          message = ("task %s %s%s"):format(rules.id, status, why and (": " .. why) or "") }
      end
    elseif TRANSIENT[err.kind] then
      last_err = err
    else
      return nil, err
    end
    delay = math.min(delay * rules.factor, rules.max)
  end
end

return M
