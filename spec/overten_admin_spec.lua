-- bearer.overten.admin: Firebase-authenticated signup and key management,
-- token refresh, and zero-downtime rotation, against the emulator (which
-- stores keys as SHA-256 only and rejects revoked keys with 401).
local bearer = require "bearer"
local core = require "bearer.core"
local overten = require "bearer.overten"
local emulator = require "support.emulator"

-- An unsigned Firebase-style JWT (the emulator checks claims, not signatures).
local jwt = emulator.firebase_token

local function fake_time(start)
  local t = { now = start, slept = {} }
  t.clock = function() return t.now end
  t.sleep = function(s) t.slept[#t.slept + 1] = s; t.now = t.now + s end
  return t
end

describe("bearer.overten.admin #unit", function()
  it("needs a token or a provider, and raises for caller mistakes", function()
    local ok, err = pcall(overten.admin, { base_url = "http://127.0.0.1:1" })
    assert.is_false(ok)
    assert.equal("config", err.kind)
    assert.equal("missing_token", err.code)
    assert.has_error(function() overten.admin{ token_provider = "x" } end)
    assert.has_error(function() overten.admin{ firebase_token = 5 } end)
    assert.has_error(function() overten.admin{ token_provider = print, api_key = "x" } end)
    ok, err = pcall(overten.admin, { firebase_token = "not-a-jwt" })
    assert.is_false(ok)
    assert.equal("config", err.kind)
  end)

  it("refuses invalid values without a request", function()
    local calls = 0
    local admin = overten.admin{ base_url = "http://127.0.0.1:1",
                                 token_provider = function() calls = calls + 1; return jwt{ exp = 4e9 } end }
    local res, err = admin:signup{ tier = "free" }
    assert.is_nil(res)
    assert.equal("validation", err.kind)
    res, err = admin:signup{ org_name = "Acme", tier = "gold" }
    assert.is_nil(res)
    assert.equal("validation", err.kind)
    res, err = admin:signup{ org_name = "A" }
    assert.is_nil(res)
    assert.equal("validation", err.kind)
    assert.equal(0, calls)
  end)
end)

describe("bearer.overten.admin #integration", function()
  local emu, t

  setup(function() emu = emulator.start() end)
  teardown(function() emu:stop() end)
  before_each(function()
    emu:reset()
    t = fake_time(os.time())
  end)

  local function admin(opts)
    opts = opts or {}
    opts.base_url = emu:overten_url()
    opts.clock, opts.sleep = t.clock, t.sleep
    if not opts.firebase_token and not opts.token_provider then
      opts.token_provider = function() return jwt{ exp = os.time() + 3600 } end
    end
    return overten.admin(opts)
  end

  local function client(key)
    return overten.client{ api_key = key, base_url = emu:overten_url(), clock = t.clock, sleep = t.sleep }
  end

  local function strings(tbl, out)
    out = out or {}
    for _, v in pairs(tbl) do
      if type(v) == "string" then out[#out + 1] = v
      elseif type(v) == "table" then strings(v, out) end
    end
    return out
  end

  describe("signup and keys", function()
    it("signs up and returns the secrets as keys that work", function()
      local a = admin()
      local acct = assert(a:signup{ org_name = "Acme Docs", tier = "free", key_name = "primary" })
      assert.truthy(acct.org_id)
      assert.is_true(bearer.key.is(acct.secret))
      assert.equal("overten", acct.secret:scheme())
      assert.is_true(bearer.key.is(acct.webhook_secret))
      assert.equal("webhook", acct.webhook_secret:scheme())
      for _, s in ipairs(strings(acct)) do
        assert.is_nil(s:find("^sk_live_%w%w%w%w%w%w%w%w%w%w%w%w%w%w"))
        assert.is_nil(s:find("^whsec_"))
      end
      local org = assert(client(acct.secret):verify())
      assert.equal(acct.org_id, org.org_id)
      assert.equal("free", org.tier)
      -- the emulator keeps only the SHA-256
      local stored = emu:control("GET", "/overten/keys")
      local secret = acct.secret:reveal()
      local found = false
      for _, rec in ipairs(stored) do
        for _, v in pairs(rec) do assert.not_equal(secret, v) end
        if rec.hash == core.sha256_hex(secret) then found = true end
      end
      assert.is_true(found)
      -- a Firebase token is sent, never an API key
      local seen = emu:requests("/api/v1/signup")[1]
      assert.truthy(seen.headers.authorization:find("^Bearer ey"))
    end)

    it("mints, lists and revokes keys; a revoked key gets 401 at once", function()
      local a = admin()
      local k = assert(a:create_key("org_test", { name = "ci-tests" }))
      assert.is_true(bearer.key.is(k.secret))
      assert.equal("ci-tests", k.name)
      assert(client(k.secret):verify())
      local items = {}
      for item in a:keys("org_test") do items[item.key_id] = item end
      assert.equal("sk_live_0123", items.key_test.prefix)
      assert.equal(k.secret:prefix():sub(1, 12), items[k.key_id].prefix)
      assert.is_nil(items[k.key_id].revoked_at)
      assert.is_nil(items[k.key_id].secret)
      assert.is_true(assert(a:revoke_key("org_test", k.key_id)))
      local res, err = client(k.secret):verify()
      assert.is_nil(res)
      assert.equal(401, err.status)
      assert.equal("invalid_api_key", err.code)
      for item in a:keys("org_test") do items[item.key_id] = item end
      assert.truthy(items[k.key_id].revoked_at)
    end)

    it("hides other users' orgs", function()
      local a = admin{ token_provider = function() return jwt{ sub = "someone_else", exp = os.time() + 3600 } end }
      local res, err = a:create_key("org_test", { name = "x" })
      assert.is_nil(res)
      assert.equal("not_found", err.kind)
      local ok, perr = pcall(function() for _ in a:keys("org_test") do end end)
      assert.is_false(ok)
      assert.equal("not_found", perr.kind)
    end)
  end)

  describe("tokens", function()
    it("refreshes a token that expires within 60 s, before the call", function()
      local n = 0
      local a = admin{ token_provider = function()
        n = n + 1
        return jwt{ exp = os.time() + (n == 1 and 30 or 3600) }
      end }
      assert(a:create_key("org_test"))
      assert.equal(1, n)
      assert(a:create_key("org_test"))
      assert.equal(2, n)   -- the first token was 30 s from expiry
      assert(a:create_key("org_test"))
      assert.equal(2, n)
      assert.equal(3, #emu:requests("/api/v1/organizations/org_test/api-keys"))
    end)

    it("refreshes once on a 401 and retries", function()
      t.now = os.time() - 100000   -- our clock thinks the expired token is fine
      local n = 0
      local a = admin{ token_provider = function()
        n = n + 1
        return jwt{ exp = os.time() + (n == 1 and -10 or 3600) }
      end }
      assert(a:create_key("org_test"))
      assert.equal(2, n)
      assert.equal(2, #emu:requests("/api/v1/organizations/org_test/api-keys"))
    end)

    it("returns a second 401 to the caller", function()
      t.now = os.time() - 100000
      local n = 0
      local a = admin{ token_provider = function() n = n + 1; return jwt{ exp = os.time() - 10 } end }
      local res, err = a:create_key("org_test")
      assert.is_nil(res)
      assert.equal("auth", err.kind)
      assert.equal("token_expired", err.code)
      assert.equal(2, n)
      assert.equal(2, #emu:requests("/api/v1/organizations/org_test/api-keys"))
    end)

    it("does not refresh a fixed firebase_token", function()
      t.now = os.time() - 100000
      local a = admin{ firebase_token = jwt{ exp = os.time() - 10 } }
      local res, err = a:create_key("org_test")
      assert.is_nil(res)
      assert.equal(401, err.status)
      assert.equal(1, #emu:requests("/api/v1/organizations/org_test/api-keys"))
    end)

    it("turns a failing provider into nil, err, never a crash", function()
      local res, err = admin{ token_provider = function() error("no network") end }:create_key("org_test")
      assert.is_nil(res)
      assert.equal("auth", err.kind)
      assert.equal("token_provider_failed", err.code)
      assert.truthy(err.message:find("no network", 1, true))
      res, err = admin{ token_provider = function() return nil, "signed out" end }:create_key("org_test")
      assert.is_nil(res)
      assert.equal("token_provider_failed", err.code)
      res, err = admin{ token_provider = function() return "garbage" end }:create_key("org_test")
      assert.is_nil(res)
      assert.equal("config", err.kind)
      res, err = admin{ token_provider = function() return 42 end }:create_key("org_test")
      assert.is_nil(res)
      assert.equal("config", err.kind)
      assert.equal(0, #emu:requests())
    end)
  end)

  describe("rotate_key", function()
    it("mints, checks, deploys, then revokes the old key", function()
      local a = admin()
      local old = assert(a:create_key("org_test", { name = "primary" }))
      local deployed
      local new = assert(a:rotate_key("org_test", old.key_id, { name = "primary-2",
        deploy = function(key, info)
          -- the new key already works while the old one still does
          assert(client(key):verify())
          assert(client(old.secret):verify())
          deployed = key
          assert.equal("primary-2", info.name)
        end }))
      assert.equal(new.secret, deployed)
      assert(client(new.secret):verify())
      local res, err = client(old.secret):verify()
      assert.is_nil(res)
      assert.equal(401, err.status)
      assert.equal("invalid_api_key", err.code)
    end)

    local function keys_by_id(a)
      local out = {}
      for item in a:keys("org_test") do out[item.key_id] = item end
      return out
    end

    local function failing_rotation(deploy, expect_kind, expect_code)
      local a = admin()
      local old = assert(a:create_key("org_test", { name = "primary" }))
      local res, err = a:rotate_key("org_test", old.key_id, { deploy = deploy })
      assert.is_nil(res)
      assert.equal(expect_kind, err.kind)
      if expect_code then assert.equal(expect_code, err.code) end
      assert(client(old.secret):verify())          -- the old key keeps working
      local keys = keys_by_id(a)
      assert.truthy(keys[err.key_id].revoked_at)    -- the new one is revoked
      assert.is_nil(keys[old.key_id].revoked_at)
    end

    it("revokes the new key when deploy raises", function()
      failing_rotation(function() error("deploy broke") end, "config", "deploy_failed")
    end)

    it("revokes the new key when deploy returns false", function()
      failing_rotation(function() return false end, "config", "deploy_failed")
    end)

    it("revokes the new key when it fails its check", function()
      emu:fault{ path = "/api/v1/verify", type = "status", status = 401, times = 1 }
      local called = false
      failing_rotation(function() called = true end, "auth", "invalid_api_key")
      assert.is_false(called)
    end)
  end)
end)
