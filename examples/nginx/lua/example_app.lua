-- The handlers of examples/nginx/nginx.conf: a JSON API over the SDK.
-- bearer notices nginx and runs each call on the `bearer` thread pool, so
-- a slow upstream never stalls the worker.
local bearer = require "bearer"
local cjson = require "cjson.safe"

local M = {}
local keys = {}      -- read once in the master (init), inherited by the workers
local clients = {}   -- made per worker on first use

function M.init()
  require "bearer.ngx"
  require "bearer.ngx.thread"
  require "bearer.ngx.webhook"
  require "bearer.optiverse"
  require "bearer.overten"
  keys.optiverse = bearer.key.from_env("OPTIVERSE_API_KEY", { scheme = "optiverse" })
  keys.overten = bearer.key.from_env("OVERTEN_API_KEY", { scheme = "overten" })
  keys.webhook = bearer.key.from_env("OVERTEN_WEBHOOK_SECRET", { scheme = "webhook" })
end

local function reply(status, body)
  ngx.status = status
  ngx.say(cjson.encode(body))
  return ngx.exit(status)
end

local function fail(err)
  local status = err.status or (err.kind == "config" and 500) or 502
  return reply(status >= 500 and 502 or status,
               { error = err.code, kind = err.kind, message = err.message })
end

local function optiverse()
  if not keys.optiverse then return nil end
  clients.optiverse = clients.optiverse or require("bearer.optiverse").client{ api_key = keys.optiverse }
  return clients.optiverse
end

local function overten()
  if not keys.overten then return nil end
  clients.overten = clients.overten or require("bearer.overten").client{ api_key = keys.overten }
  return clients.overten
end

-- GET /records?limit=20&offset=0: one page of Optiverse meeting records.
function M.records()
  local ov = optiverse()
  if not ov then return reply(503, { error = "OPTIVERSE_API_KEY is not set" }) end
  local args = ngx.req.get_uri_args()
  local page, err = ov:records_page{ limit = tonumber(args.limit) or 20,
                                     offset = tonumber(args.offset) or 0 }
  if not page then return fail(err) end
  local out = {}
  for _, rec in ipairs(page.data) do
    out[#out + 1] = { id = rec.recordId, title = rec.meetingTitle, start = rec.startDate }
  end
  return reply(200, { records = out, total = page.pagination and page.pagination.total })
end

-- GET /verify: which Overten organisation the key belongs to (never a secret).
function M.verify()
  local ot = overten()
  if not ot then return reply(503, { error = "OVERTEN_API_KEY is not set" }) end
  local org, err = ot:verify()
  if not org then return fail(err) end
  return reply(200, { org_id = org.org_id, org_name = org.org_name, tier = org.tier,
                      key_prefix = org.key_prefix })
end

-- POST /webhooks/overten: signature checked in C, 200 at once, the event
-- handled after the response.
function M.webhook()
  if not keys.webhook then return reply(503, { error = "OVERTEN_WEBHOOK_SECRET is not set" }) end
  require("bearer.ngx").webhook{
    secret = keys.webhook,
    handler = function(event)
      ngx.log(ngx.NOTICE, "overten event ", tostring(event.event), " for run ", tostring(event.run_id))
    end,
  }
end

return M
