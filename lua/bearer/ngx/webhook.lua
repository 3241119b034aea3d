--- bearer.ngx.webhook: an Overten webhook receiver for content_by_lua.
--
--   content_by_lua_block {
--     require("bearer.ngx").webhook{ secret = SECRET, handler = function(event) ... end }
--   }
--
-- Reads the raw body, has bearer.overten.webhook.verify check it (the one
-- verifier: repeated signature headers, tolerance, null stripping are its
-- rules, not this file's), answers at once (200, or 400 for a malformed
-- request, 401 for a bad signature or a stale timestamp), and hands the
-- decoded event to the handler from a timer, after the response, so a
-- slow handler never delays Overten.
--
-- With `replay` (a lua_shared_dict name or a redis:// URL, shared by every
-- host receiving for the secret) a delivery already accepted is answered
-- 200 without running the handler again: the sender already had its
-- answer, and a 409 would only make a retrying sender log a failure for
-- an event that was handled. 503 when the replay store fails (the sender
-- retries later; the handler has not run).
local cjson = require "bearer.json"
local verifier = require "bearer.overten.webhook"

local M = {}

local function read_body()
  ngx.req.read_body()
  local body = ngx.req.get_body_data()
  if body then return body end
  local path = ngx.req.get_body_file()   -- spooled: larger than the buffer
  if not path then return "" end
  local f = io.open(path, "rb")
  if not f then return nil end
  body = f:read("*a")
  f:close()
  return body
end

local function answer(status, tbl)
  ngx.status = status
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(tbl))
  return ngx.exit(status)
end

local function run_handler(premature, handler, event)
  if premature then return end
  local ok, err = pcall(handler, event)
  if not ok then ngx.log(ngx.ERR, "bearer: webhook handler failed: ", tostring(err)) end
end

--- Answers one Overten delivery in content_by_lua* (200, 400, 401 or 405), then
-- runs `handler(event)` in a timer (bearer.ngx.webhook).
---@param opts { secret: string|bearer.Key, handler: fun(event: table), tolerance: number|nil }
function M.receive(opts)
  if type(opts) ~= "table" then
    error("bad argument #1 to 'webhook' (table expected, got " .. type(opts) .. ")", 2)
  end
  if type(opts.handler) ~= "function" then
    error("bad option 'handler' to 'webhook' (function expected, got " .. type(opts.handler) .. ")", 2)
  end
  local secret = opts.secret
  if not (type(secret) == "string" or require("bearer").key.is(secret)) then
    error("bad option 'secret' to 'webhook' (bearer.Key or string expected)", 2)
  end
  local tolerance = opts.tolerance
  if tolerance ~= nil and type(tolerance) ~= "number" then
    error("bad option 'tolerance' to 'webhook' (number expected, got " .. type(tolerance) .. ")", 2)
  end
  if opts.replay ~= nil and type(opts.replay) ~= "string" then
    error("bad option 'replay' to 'webhook' (lua_shared_dict name or redis:// URL expected, got "
          .. type(opts.replay) .. ")", 2)
  end
  if ngx.req.get_method() ~= "POST" then
    return answer(405, { error = "method_not_allowed" })
  end
  local body = read_body()
  if body == nil then return answer(400, { error = "malformed", message = "unreadable body" }) end
  ngx.update_time()
  local event, err = verifier.verify{ secret = secret, body = body, headers = ngx.req.get_headers(),
                                      tolerance = tolerance, now = ngx.now(), replay = opts.replay,
                                      replay_timeout = opts.replay_timeout }
  if not event then
    if err.code == "replayed" then return answer(200, { ok = true, replayed = true }) end
    if err.code == "store_unavailable" then
      ngx.log(ngx.ERR, "bearer: webhook replay store failed: ", err.message)
      return answer(503, { error = "busy" })
    end
    if err.kind == "decode" then   -- signed, but not a JSON object
      return answer(400, { error = "malformed", message = err.message })
    end
    return answer(err.code == "malformed" and 400 or 401, { error = err.code, message = err.message })
  end
  local timer_ok, timer_err = ngx.timer.at(0, run_handler, opts.handler, event)
  if not timer_ok then
    -- no timer left: say so, Overten retries later
    ngx.log(ngx.ERR, "bearer: cannot schedule the webhook handler: ", tostring(timer_err))
    return answer(503, { error = "busy" })
  end
  return answer(200, { ok = true })
end

return M
