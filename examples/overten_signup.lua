-- Overten from nothing to a first document: sign up (Firebase token), use
-- the key the API hands back once, generate a spreadsheet, download it.
--
--   FIREBASE_ID_TOKEN=... OVERTEN_BASE_URL=... lua5.4 examples/overten_signup.lua
--
-- `make demo` runs it against the local emulator, with an unsigned token
-- that only the emulator accepts.
local overten = require "bearer.overten"

local base_url = os.getenv("OVERTEN_BASE_URL") or overten.DEFAULT_BASE_URL

-- Called again by the SDK when the token is within 60 s of expiry or a
-- call gets 401; in an app this asks Firebase for a fresh ID token.
local function firebase_token()
  local token = os.getenv("FIREBASE_ID_TOKEN")
  if token then return token end
  return nil, "set FIREBASE_ID_TOKEN to a Firebase ID token"
end

local admin = overten.admin{ token_provider = firebase_token, base_url = base_url }
local acct = assert(admin:signup{ org_name = "Acme Docs", tier = "free", key_name = "primary" })
print("org:       ", acct.org_id, acct.tier)
print("api key:   ", acct.secret)            -- a bearer.Key: prints only its prefix
print("webhooks:  ", acct.webhook_secret)

local c = overten.client{ api_key = acct.secret, base_url = base_url }
local org = assert(c:verify())
print("verified:  ", org.org_name, org.key_prefix, ("credits %g"):format(org.credits_balance))

local doc = assert(c:generate("excel", { prompt = "Q3 sales report by region, with a chart",
                                         file_name = "Q3 sales", wait = true,
                                         on_progress = function(task)
                                           print("  task " .. task.status .. " " .. tostring(task.progress) .. "%")
                                         end }))
print("run:       ", doc.run_id, doc.status, doc.promoted and "(promoted, waited)" or "")

local tmp = os.tmpname()
os.remove(tmp)
local path = tmp .. ".xlsx"
local file = assert(c:download(doc.run_id, path))
print(("saved:      %s (%d bytes, %s)"):format(file.path, file.bytes, file.filename))
os.remove(path)
c:close()
admin:close()
