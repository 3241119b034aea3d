-- Overten webhook subscriptions (POST/GET /webhooks, DELETE /webhooks/{id})
-- and real delivery: when a generated task completes or fails, every
-- matching subscription of its org, and the task's own webhook_url, get a
-- signed POST from a timer (cosocket), retried on 5xx/timeouts (not on
-- 4xx). Only loopback http URLs are delivered to; anything else is logged
-- as refused, so the emulator never sends traffic off the machine.
--
-- Control: /_emulator/inbox[/name] receives deliveries (GET lists them,
-- with ?count=N&wait=S to long-poll; ?status=NNN on the URL makes the
-- inbox answer that status); /_emulator/overten/deliveries is the log.
local ffi = require "ffi"
local common = require "common"
local json = require "json"
local S = require "overten_state"

local M = {}

M.EVENTS = { ["run.completed"] = true, ["run.failed"] = true }
M.RETRY_DELAYS = { 0.2, 0.5 }   -- seconds before attempts 2 and 3 (the real schedule is unknown)

------------------------------------------------------------ signatures --

ffi.cdef [[
typedef struct evp_md_st EVP_MD;
const EVP_MD *EVP_sha256(void);
unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md,
                    unsigned int *md_len);
]]
local ok, crypto = pcall(ffi.load, "crypto")
if not ok then crypto = ffi.load("libcrypto.so.3") end

local function hmac_hex(secret, data)
  local md = ffi.new("unsigned char[32]")
  local len = ffi.new("unsigned int[1]")
  crypto.HMAC(crypto.EVP_sha256(), secret, #secret, data, #data, md, len)
  return (ffi.string(md, 32):gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- "sha256=" .. HMAC-SHA256(secret, "{timestamp}.{raw_body}") (assumed layout).
function M.sign(secret, timestamp, body)
  return "sha256=" .. hmac_hex(secret, timestamp .. "." .. body)
end

--------------------------------------------------------------- delivery --

local function is_loopback(host)
  return host == "localhost" or host == "[::1]" or host:match("^127%.%d+%.%d+%.%d+$") ~= nil
end

local function record(entry)
  entry.time = ngx.now()
  S.deliveries[#S.deliveries + 1] = entry
end

-- One HTTP/1.1 POST over a cosocket; returns the status or nil, error.
local function post(host, port, target, headers, body)
  local sock = ngx.socket.tcp()
  sock:settimeout(15000)   -- the documented 15 s to answer
  local okc, err = sock:connect(host == "localhost" and "127.0.0.1" or host:gsub("^%[(.*)%]$", "%1"), port)
  if not okc then return nil, "connect: " .. tostring(err) end
  local lines = { "POST " .. target .. " HTTP/1.1", "Host: " .. host .. ":" .. port,
                  "Content-Length: " .. #body, "Connection: close" }
  for name, value in pairs(headers) do lines[#lines + 1] = name .. ": " .. value end
  local _, serr = sock:send(table.concat(lines, "\r\n") .. "\r\n\r\n" .. body)
  if serr then sock:close(); return nil, "send: " .. serr end
  local status_line, rerr = sock:receive("*l")
  sock:close()
  if not status_line then return nil, "receive: " .. tostring(rerr) end
  return tonumber(status_line:match("^HTTP/%d%.%d (%d%d%d)"))
end

local deliver

-- Timer callback: attempt `n` of one delivery.
deliver = function(premature, d, n)
  if premature then return end
  local ts = tostring(ngx.time())
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-Overten-Signature"] = M.sign(d.secret, ts, d.body),
    ["X-Overten-Timestamp"] = ts,
    ["X-Overten-Event"] = d.event,
    ["User-Agent"] = "Overten-Webhook/1.0",
  }
  if d.epoch ~= M.epoch then return end   -- a reset happened meanwhile
  local status, err = post(d.host, d.port, d.target, headers, d.body)
  record{ url = d.url, event = d.event, webhook_id = d.webhook_id or json.null, attempt = n,
          status = status or json.null, error = err or json.null,
          delivered = status ~= nil and status >= 200 and status < 300 }
  local retry = (status == nil) or status >= 500
  if retry and M.RETRY_DELAYS[n] then
    ngx.timer.at(M.RETRY_DELAYS[n], deliver, d, n + 1)
  end
end

-- Queues the signed POST of `event` to `url` (a timer: the request that
-- finished the task does not wait for it).
local function send(url, secret, event, body, webhook_id)
  local scheme, host, port, target = url:match("^(https?)://([^/:]+):?(%d*)(.*)$")
  if not scheme then
    return record{ url = url, event = event, refused = "malformed URL", delivered = false, attempt = 0 }
  end
  if scheme ~= "http" or not is_loopback(host) then
    return record{ url = url, event = event, webhook_id = webhook_id or json.null, attempt = 0,
                   delivered = false, refused = "the emulator delivers only to loopback http URLs" }
  end
  local d = { url = url, host = host, port = tonumber(port) or 80,
              target = target ~= "" and target or "/", secret = secret, event = event,
              body = body, webhook_id = webhook_id, epoch = M.epoch }
  local okt, err = ngx.timer.at(0, deliver, d, 1)
  if not okt then record{ url = url, event = event, refused = "timer: " .. tostring(err), delivered = false } end
end

-- Called (through overten_gen) when a generated task ends.
function M.task_finished(task)
  local event = task.status == "completed" and "run.completed" or task.status == "failed" and "run.failed"
  if not event then return end   -- no events for cancelled/expired are documented
  local run = task.run
  local payload = { event = event, run_id = run.run_id, task_id = task.task_id,
                    agent_name = run.format .. "_agent_api", format = run.format,
                    status = task.status, created_at = S.now_iso() }
  if event == "run.completed" then
    local view = S.task_view(task).result
    for k, v in pairs(view) do payload[k] = v end
  else
    payload.error = { code = "upstream_error", message = "The rendering pipeline failed." }
  end
  local body = json.encode(payload)
  for _, hook in ipairs(S.webhook_order) do
    if hook.org_id == task.org_id and not hook.deleted and hook.events_set[event] then
      send(hook.url, hook.secret, event, body, hook.webhook_id)
    end
  end
  if task.webhook_url then
    -- one-shot, signed with the org's primary secret (GET /verify)
    send(task.webhook_url, S.orgs[task.org_id].webhook_secret, event, body)
  end
end

---------------------------------------------------------- subscriptions --

local function view(hook, with_secret)
  return { webhook_id = hook.webhook_id, url = hook.url, events = hook.events,
           description = hook.description, active = true, created_at = hook.created_at,
           secret = with_secret and hook.secret or nil }
end

local function create(req, key)
  local body, err = S.json_body(req)
  if not body then return err end
  local url
  url, err = S.text(body, "url", 1, 2048, true)
  if not url then return err end
  if not url:match("^https?://[^/]") then
    return S.unprocessable("url", "Input should be a valid URL", "url_parsing")
  end
  if type(body.events) ~= "table" or #body.events == 0 then
    return S.unprocessable("events", "List should have at least 1 item", "too_short")
  end
  local set = {}
  for _, e in ipairs(body.events) do
    if not M.EVENTS[e] then
      return S.unprocessable("events", "Input should be 'run.completed' or 'run.failed'", "enum")
    end
    set[e] = true
  end
  local description
  description, err = S.text(body, "description", 0, 500)
  if err then return err end
  local hook = { webhook_id = S.id("whk_"), org_id = key.org.org_id, url = url,
                 events = json.array(body.events), events_set = set,
                 description = description or json.null, secret = "whsec_" .. S.token(32),
                 created_at = S.now_iso() }
  S.webhooks[hook.webhook_id] = hook
  S.webhook_order[#S.webhook_order + 1] = hook
  return common.json(201, view(hook, true))
end

local function list(req, key)
  local items = {}
  for _, hook in ipairs(S.webhook_order) do
    if hook.org_id == key.org.org_id and not hook.deleted then items[#items + 1] = view(hook) end
  end
  return S.page(req, items, "webhook_id", 100)
end

local function delete(req, key, id)
  local hook = S.webhooks[id]
  if not hook or hook.org_id ~= key.org.org_id or hook.deleted then return S.not_found("Webhook", id) end
  hook.deleted = true
  return common.response(204, "", "application/json")
end

M.ROUTES = {
  { "POST", "^/webhooks$", create },
  { "GET", "^/webhooks$", list },
  { "DELETE", "^/webhooks/([^/]+)$", delete },
}

---------------------------------------------------------------- control --

M.epoch = 0
local reset = S.reset
S.reset = function()
  reset()
  M.epoch = M.epoch + 1
end

-- Records what a delivery brought; ?status=NNN answers that status.
local function inbox_post(req)
  local status = tonumber(req.args.status) or 200
  S.inbox[#S.inbox + 1] = { path = req.path, query = req.query, headers = req.headers,
                            body = req.body, status = status, time = ngx.now() }
  return common.json(status, { ok = status < 400 })
end

-- Long-polls (server side, so specs never sleep) until `count` entries
-- exist or `wait` seconds (max 10) pass.
local function wait_for(list_fn, req)
  local want = tonumber(req.args.count) or 0
  local deadline = ngx.now() + math.min(tonumber(req.args.wait) or 0, 10)
  while #list_fn() < want and ngx.now() < deadline do
    ngx.sleep(0.01)
    ngx.update_time()
  end
  return common.json(200, json.array(list_fn()))
end

M.CONTROL = {
  { "POST", "^/inbox$", inbox_post },
  { "POST", "^/inbox/.*$", inbox_post },
  { "GET", "^/inbox$", function(req) return wait_for(function() return S.inbox end, req) end },
  { "DELETE", "^/inbox$", function() S.inbox = {}; return common.json(200, { ok = true }) end },
  { "GET", "^/overten/deliveries$", function(req) return wait_for(function() return S.deliveries end, req) end },
}

return M
