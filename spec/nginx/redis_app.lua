--- The app of spec/nginx/redis.conf.in: rate-limited calls and a webhook
-- receiver whose shared state lives in the Redis store configure{} names.
local cjson = require "cjson"

local M = {}
local settings

-- The secret the spec signs its deliveries with.
M.WEBHOOK_SECRET = "whsec_test_replay_ngx"

function M.init(opts)
  settings = opts
  require("bearer.ngx").configure{ store = opts.store }
  require "bearer.optiverse"
  require "bearer.ngx.redis"
  require "bearer.ngx.webhook"
end

-- GET /calls?n=N: N Optiverse calls, each a first attempt, 8 per 2 s
-- for the key, wherever they run.
function M.calls()
  local ov = require("bearer.optiverse").client{ api_key = settings.key, base_url = settings.api,
    max_retries = 0, connect_timeout = 0.5, rate_limit = { requests = 8, per = 2 } }
  local ok, errs = 0, {}
  for _ = 1, tonumber(ngx.var.arg_n) do
    local page, err = ov:records_page{ limit = 1 }
    if page then ok = ok + 1 else errs[#errs + 1] = tostring(err) end
  end
  ov:close()
  ngx.say(cjson.encode{ ok = ok, errors = errs })
end

-- replay: the Redis store, or the lua_shared_dict named `dict` (one nginx)
function M.webhook(dict)
  require("bearer.ngx").webhook{ secret = M.WEBHOOK_SECRET, replay = dict or settings.store,
    replay_timeout = 0.5,
    handler = function() ngx.shared.results:incr("handled", 1, 0) end }
end

function M.handled()
  ngx.say(cjson.encode{ handled = ngx.shared.results:get("handled") or 0 })
end

return M
