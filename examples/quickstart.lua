-- quickstart.lua: keys, a client, a list, and what a failure looks like.
-- `make demo` runs it against the bundled emulator; against the real APIs,
-- set OVERTEN_API_KEY (and OPTIVERSE_API_KEY) and drop the *_BASE_URL ones.
local bearer = require "bearer"

-- The secret goes from the environment into C memory; Lua sees only this:
local key = assert(bearer.key.from_env("OVERTEN_API_KEY", { scheme = "overten" }))
print("key:        " .. tostring(key))

local overten_url = os.getenv("OVERTEN_BASE_URL") or "https://backend.overtenai.com/api/v1"
local overten = bearer.client{ base_url = overten_url, key = key }
local org = assert(overten:get("/verify")).json
print(("org:        %s (%s), tier %s"):format(org.org_name, org.org_id, org.tier))

local page = assert(overten:get("/runs", { query = { limit = 3 } })).json
for _, run in ipairs(page.data) do
  print(("run:        %s  %-6s  %s"):format(run.run_id, run.format, run.status))
end

-- Failures are error objects: fields to branch on, one line to print.
local revoked = bearer.client{ base_url = overten_url, key = "sk_live_" .. string.rep("0", 28) }
local res, err = revoked:get("/verify")
assert(res == nil and err.kind == "auth")
print("error:      " .. tostring(err))

local ov_key = bearer.key.from_env("OPTIVERSE_API_KEY", { scheme = "optiverse" })
if ov_key then
  local optiverse = bearer.client{
    base_url = os.getenv("OPTIVERSE_BASE_URL") or "https://api.optiverse.ai/external-api",
    key = ov_key,
  }
  local records = assert(optiverse:get("/v1/list-records", { query = { limit = 3 } })).json
  for _, rec in ipairs(records.data) do
    print(("meeting:    %s  %s"):format(rec.startDate, rec.meetingTitle))
  end
  print(("records:    %d in all"):format(records.pagination.total))
end
key:close()
