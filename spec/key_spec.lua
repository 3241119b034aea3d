local bearer = require "bearer"
local core = require "bearer.core"
local subprocess = require "support.subprocess"

local OVERTEN = "sk_live_0123456789abcdefABCDEF012345"
local OPTIVERSE = "optiuser_v1_test_4f9a2c1d8e7b6a5f"
local WEBHOOK = "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTEyMzQ1Njc4OTA="

local function b64url(s)
  local alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
  local out, bits, acc = {}, 0, 0
  for i = 1, #s do
    acc = (acc << 8) | s:byte(i)
    bits = bits + 8
    while bits >= 6 do
      bits = bits - 6
      local v = (acc >> bits) & 63
      out[#out + 1] = alphabet:sub(v + 1, v + 1)
    end
  end
  if bits > 0 then
    local v = (acc << (6 - bits)) & 63
    out[#out + 1] = alphabet:sub(v + 1, v + 1)
  end
  return table.concat(out)
end

local function jwt(payload)
  return b64url('{"alg":"RS256","kid":"k1","typ":"JWT"}') .. "." .. b64url(payload)
         .. "." .. b64url("signature-bytes-not-checked")
end

-- Everything a caller can see of a key or its failure, as one string.
local function visible(x)
  return tostring(x) .. (type(x) == "table" and (tostring(x.message) .. tostring(x.code)) or "")
end

describe("bearer.key #unit", function()
  it("validates each scheme and detects it from the prefix", function()
    assert.equal("overten", bearer.key(OVERTEN):scheme())
    assert.equal("optiverse", bearer.key(OPTIVERSE):scheme())
    assert.equal("webhook", bearer.key(WEBHOOK):scheme())
    assert.equal("firebase", bearer.key(jwt('{"exp":1900000000}')):scheme())
    assert.equal("token", bearer.key("opaque-token-123"):scheme())
    assert.equal("overten", bearer.key(OVERTEN, { scheme = "overten" }):scheme())
  end)

  it("takes schemes as data: C knows none by name, a new API registers its own", function()
    -- C checks the rule it is handed; a name means nothing to it
    assert.has_error(function() core.key_new(OVERTEN, { scheme = "overten" }) end)
    local rule = { name = "acme", prefix = "acme_", alphabet = "alnum", length = 8,
                   expect = "'acme_' followed by exactly 8 letters or digits" }
    assert.equal("acme", core.key_new("acme_abcd1234", { scheme = rule }):scheme())
    -- a third API: its rule registered, detected by its prefix, no C change
    assert.has_error(function() bearer.key("acme_abcd1234", { scheme = "acme" }) end)
    bearer.key.register(rule)
    assert.equal("acme", bearer.key("acme_abcd1234"):scheme())
    assert.equal("bearer.Key(acme acme_...)", tostring(bearer.key("acme_abcd1234")))
    local ok, err = pcall(bearer.key, "acme_short", { scheme = "acme" })
    assert.is_false(ok)
    assert.equal("invalid acme key: expected 'acme_' followed by exactly 8 letters or digits "
                 .. "(got 10 characters)", err.message)
    for _, bad in ipairs{ {}, { name = "token" }, { name = "x y" }, { name = "x", alphabet = "emoji" },
                          { name = "x", length = 0 }, { name = "x", prefix = string.rep("p", 30) } } do
      assert.has_error(function() bearer.key.register(bad) end)
    end
  end)

  it("finds an API's scheme by name before its module is loaded", function()
    local out, ok = subprocess.run(([[
      local bearer = require "bearer"
      assert(not package.loaded["bearer.overten"] and not package.loaded["bearer.optiverse"])
      print(bearer.key(%q, { scheme = "overten" }):scheme(), bearer.key(%q):scheme())
    ]]):format(OVERTEN, OPTIVERSE))
    assert.is_true(ok, out)
    assert.truthy(out:find("overten\toptiverse", 1, true), out)
  end)

  it("refuses secrets that break their scheme, without echoing them", function()
    local bad = {
      { "sk_live_0123456789abcdefABCDEF01234", "overten" },     -- 27 characters
      { "sk_live_0123456789abcdefABCDEF0123456", "overten" },   -- 29
      { "sk_live_0123456789abcdefABCDEF01234!", "overten" },    -- not alphanumeric
      { "sk_test_0123456789abcdefABCDEF012345", "overten" },
      { "optiuser_v1_", "optiverse", public = true },
      { "optiuser_v2_abcdef", "optiverse" },
      { "optiuser_v1_abc$def", "optiverse" },
      { "whsec_", "webhook", public = true },
      { "whsec_abc\"def", "webhook" },
      { "notajwt", "firebase" },
      { "a.b", "firebase" },
      { b64url("{}") .. ".." .. b64url("x"), "firebase" },
      { b64url("{}") .. "." .. b64url("not json") .. "." .. b64url("x"), "firebase" },
    }
    for _, case in ipairs(bad) do
      local ok, err = pcall(bearer.key, case[1], { scheme = case[2] })
      assert.is_false(ok, case[1])
      assert.is_true(bearer.error.is(err))
      assert.equal("config", err.kind)
      assert.equal("invalid_key", err.code)
      if not case.public then   -- a bare prefix is the rule's own text
        assert.is_nil(visible(err):find(case[1], 1, true), "error echoes the secret")
      end
      assert.truthy(err.message:find(case[2], 1, true))
    end
  end)

  it("refuses control characters, spaces, CR and LF whatever the scheme", function()
    for _, s in ipairs{ "tok\r\nX-Evil: 1", "tok en", "tok\0en", "tok\ten", "tok\127", "tök" } do
      for _, scheme in ipairs{ "token", "optiverse", "webhook" } do
        local ok, err = pcall(bearer.key, s, { scheme = scheme })
        assert.is_false(ok)
        assert.equal("invalid_key", err.code)
      end
    end
    assert.has_error(function() bearer.key("") end)
  end)

  it("raises argument errors for wrong types", function()
    assert.has_error(function() bearer.key(nil) end)
    assert.has_error(function() bearer.key(OVERTEN, { scheme = "nope" }) end)
    assert.has_error(function() bearer.key(OVERTEN, "overten") end)
  end)

  it("shows only the scheme and the public prefix", function()
    local k = bearer.key(OVERTEN)
    assert.equal("sk_live_0123", k:prefix())
    assert.equal("bearer.Key(overten sk_live_0123...)", tostring(k))
    assert.equal("optiuser_v1_test", bearer.key(OPTIVERSE):prefix())
    assert.equal("whsec_c2Vj", bearer.key(WEBHOOK):prefix())
    -- short secrets and tokens without a literal prefix show nothing of themselves
    assert.equal("optiuser_v1_", bearer.key("optiuser_v1_short"):prefix())
    assert.equal("", bearer.key("opaque-token-123"):prefix())
    assert.equal("bearer.Key(token)", tostring(bearer.key("opaque-token-123")))
    for _, s in ipairs{ OVERTEN, OPTIVERSE, WEBHOOK } do
      assert.is_nil(tostring(bearer.key(s)):find(s, 1, true))
    end
  end)

  it("fingerprints with lower-case hex SHA-256 and reveals on request", function()
    local k = bearer.key(OVERTEN)
    assert.equal(core.sha256_hex(OVERTEN), k:fingerprint())
    assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                 core.sha256_hex(""))
    assert.equal(OVERTEN, k:reveal())
  end)

  it("compares keys by their secret", function()
    assert.is_true(bearer.key(OVERTEN) == bearer.key(OVERTEN))
    assert.is_false(bearer.key(OVERTEN) == bearer.key("sk_live_0123456789abcdefABCDEF012346"))
    assert.is_false(bearer.key(OVERTEN) == bearer.key(OPTIVERSE))
  end)

  it("exposes a firebase token's exp claim without verifying it", function()
    assert.equal(1900000000, bearer.key(jwt('{"sub":"u1","exp":1900000000,"iat":1}')):expires_at())
    -- an "exp" inside a nested value or a string is not the claim
    local k = bearer.key(jwt('{"nested":{"exp":5},"note":"\\"exp\\": 7","exp": 42}'))
    assert.equal(42, k:expires_at())
    assert.is_nil(bearer.key(jwt('{"sub":"u1"}')):expires_at())
  end)

  it("wipes on close and refuses any use after it", function()
    local k = bearer.key(OVERTEN)
    k:close()
    k:close()   -- idempotent
    assert.is_true(k:is_closed())
    assert.equal("bearer.Key(closed)", tostring(k))
    for _, m in ipairs{ "reveal", "prefix", "scheme", "fingerprint", "expires_at" } do
      assert.has_error(function() k[m](k) end, nil, m)
      local ok, msg = pcall(k[m], k)
      assert.is_false(ok)
      assert.truthy(tostring(msg):find("closed bearer.Key", 1, true))
    end
    -- equality answers, never raises (issue 12): a closed key equals nothing
    assert.is_false(k == bearer.key(OVERTEN))
    assert.is_false(bearer.key(OVERTEN) == k)
  end)

  it("is not equal to other userdata, and comparing never raises", function()
    local k = bearer.key(OVERTEN)
    assert.is_false(k == io.stdout)
    assert.is_false(io.stdout == k)
    local c = bearer.client{ base_url = "http://127.0.0.1:1" }
    assert.is_false(k == c)
    c:close()
  end)

  it("closes at the end of a to-be-closed scope", function()
    local held
    do
      local k <close> = bearer.key(OVERTEN)
      held = k
      assert.is_false(held:is_closed())
    end
    assert.is_true(held:is_closed())
  end)

  it("keeps the secret's pages out of core dumps", function()
    local k = bearer.key(OVERTEN)
    local f = io.open("/proc/self/smaps")
    if not f then return pending("no /proc/self/smaps") end
    local smaps = f:read("a")
    f:close()
    assert.truthy(smaps:find("VmFlags:[^\n]* dd"), "no MADV_DONTDUMP mapping found")
    k:close()
  end)

  it("locks the metatable", function()
    assert.equal("string", type(getmetatable(bearer.key(OVERTEN))))
    assert.is_true(bearer.key.is(bearer.key(OVERTEN)))
    assert.is_false(bearer.key.is(OVERTEN))
  end)
end)

describe("bearer.key.from_env #unit", function()
  it("reads the variable in C and validates it", function()
    local out, ok = subprocess.run([[
      local bearer = require "bearer"
      local k = assert(bearer.key.from_env("MY_KEY", { scheme = "overten" }))
      io.write(tostring(k), " ", k:scheme(), "\n")
      local none, err = bearer.key.from_env("BEARER_SURELY_UNSET_VAR")
      io.write(tostring(none), " ", err.kind, " ", err.code, "\n")
      local bad, err2 = bearer.key.from_env("BAD_KEY", { scheme = "overten" })
      io.write(tostring(bad), " ", err2.code, " ", err2.message, "\n")
    ]], { MY_KEY = OVERTEN, BAD_KEY = "sk_live_tooshort" })
    assert.is_true(ok, out)
    assert.truthy(out:find("bearer.Key(overten sk_live_0123...) overten", 1, true), out)
    assert.truthy(out:find("nil config missing_key", 1, true), out)
    assert.truthy(out:find("nil invalid_key invalid overten key from environment variable BAD_KEY", 1, true), out)
    assert.is_nil(out:find("sk_live_tooshort", 1, true))
  end)
end)

describe("bearer.key.from_file #unit", function()
  local path
  before_each(function() path = os.tmpname() end)
  after_each(function() os.remove(path) end)

  local function write(content, mode)
    local f = assert(io.open(path, "wb"))
    f:write(content)
    f:close()
    os.execute("chmod " .. mode .. " " .. path)
  end

  it("reads a private file and strips one trailing newline", function()
    write(OVERTEN .. "\n", "600")
    local k = assert(bearer.key.from_file(path, { scheme = "overten" }))
    assert.equal(OVERTEN, k:reveal())
    write(OPTIVERSE .. "\r\n", "400")
    assert.equal(OPTIVERSE, assert(bearer.key.from_file(path)):reveal())
  end)

  it("refuses a file group or others may read", function()
    write(OVERTEN, "644")
    local k, err = bearer.key.from_file(path)
    assert.is_nil(k)
    assert.equal("config", err.kind)
    assert.equal("key_file", err.code)
    assert.truthy(err.message:find("group or others", 1, true))
    write(OVERTEN, "640")
    assert.is_nil((bearer.key.from_file(path)))
  end)

  it("returns an error for a missing file or bad content", function()
    local k, err = bearer.key.from_file("/nonexistent/key")
    assert.is_nil(k)
    assert.equal("key_file", err.code)
    write("sk_live_short\n\n", "600")   -- only one newline is stripped
    k, err = bearer.key.from_file(path, { scheme = "overten" })
    assert.is_nil(k)
    assert.equal("invalid_key", err.code)
    assert.is_nil(visible(err):find("sk_live_short", 1, true))
  end)
end)
