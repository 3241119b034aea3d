-- bearer.json.decode: the core's reader (src/json.c) gives the document
-- bearer.json documents, and refuses what is not RFC 8259 JSON with a
-- reason, never a raise or a crash.
local json = require "bearer.json"
local cjson = require "cjson.safe"

local has_integers = math.type ~= nil

describe("bearer.json.decode #unit", function()
  it("leaves null members out of objects and keeps nulls in arrays", function()
    local doc = assert(json.decode('{"a":null,"b":[1,null,3],"c":{"d":null,"e":"x"}}'))
    assert.is_nil(doc.a)
    assert.is_nil(rawget(doc, "a"))
    assert.equal(3, #doc.b)
    assert.equal(json.null, doc.b[2])
    assert.equal(cjson.null, doc.b[2])
    assert.same({ e = "x" }, doc.c)
    assert.equal(json.null, json.decode("null"))
  end)

  it("gives integers where the Lua has them, floats otherwise", function()
    local doc = assert(json.decode('[0,-0,7,-12,1.0,1e3,2.5,-1.5e-3,9007199254740993,'
      .. '-9223372036854775808,9223372036854775807,9223372036854775808,1e400]'))
    assert.equal(0, doc[1]); assert.equal(0, doc[2]); assert.equal(7, doc[3]); assert.equal(-12, doc[4])
    assert.equal(1, doc[5]); assert.equal(1000, doc[6]); assert.equal(2.5, doc[7])
    assert.equal(-1.5e-3, doc[8])
    assert.equal(math.huge, doc[13])
    if has_integers then
      for i = 1, 6 do assert.equal("integer", math.type(doc[i]), "item " .. i) end
      assert.equal("float", math.type(doc[7]))
      -- integers past 2^53 stay exact while they fit 64 bits
      assert.equal(9007199254740993, doc[9])
      assert.equal(math.mininteger, doc[10])
      assert.equal(math.maxinteger, doc[11])
      assert.equal("float", math.type(doc[12]))
      assert.equal(2 ^ 63, doc[12])
    end
  end)

  it("resolves every escape, surrogate pairs to UTF-8", function()
    local s = assert(json.decode([["a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00 end"]]))
    assert.equal('a"b\\c/d\b\f\n\r\tA\195\169\226\130\172\240\159\152\128 end', s)
    assert.equal("\0", json.decode([["\u0000"]]))
    assert.equal("caf\195\169", json.decode('"caf\195\169"'))   -- raw UTF-8 passes through
  end)

  it("tells every byte apart at every place in a string (the 16-byte scan and its tail)", function()
    for b = 0, 255 do
      if b ~= 92 then   -- a backslash starts an escape: the test above
        for pos = 1, 40 do
          local text = '"' .. ("a"):rep(pos - 1) .. string.char(b) .. ("b"):rep(40 - pos) .. '"'
          local s, err = json.decode(text)
          if b < 0x20 then
            assert.truthy(err and err:find("control character", 1, true), text)
          elseif b == 34 then
            assert.is_nil(s, text)
          else
            assert.equal(text:sub(2, -2), s)
          end
        end
      end
    end
  end)

  it("keeps the last of a repeated member name", function()
    assert.same({ a = 2 }, json.decode('{"a":1,"a":2}'))
    assert.same({}, json.decode('{"a":1,"a":null}'))
  end)

  it("builds containers of any size, past the size it guessed from their siblings", function()
    local items, members, want_obj = {}, {}, {}
    for i = 1, 1000 do
      items[i] = tostring(i)
      if i % 3 == 0 then
        members[i] = ('"k%d":null'):format(i)
      else
        members[i] = ('"k%d":%d'):format(i, i)
        want_obj["k" .. i] = i
      end
    end
    local arr = assert(json.decode("[" .. table.concat(items, ",") .. "]"))
    assert.equal(1000, #arr)
    for i = 1, 1000 do assert.equal(i, arr[i]) end
    assert.same(want_obj, json.decode("{" .. table.concat(members, ",") .. "}"))
    -- and nested: a large array of large objects
    local rows = {}
    for i = 1, 300 do rows[i] = "{" .. table.concat(members, ",", 1, 300) .. "}" end
    local doc = assert(json.decode("[" .. table.concat(rows, ",") .. "]"))
    assert.equal(300, #doc)
    assert.equal(299, doc[300].k299)
    assert.is_nil(doc[300].k300)
  end)

  -- KiB the tables of `text` take when decoded right after `before`
  -- (whose sizes the reader's guesses then hold), and the document
  local function kb_decoding(before, text)
    assert(json.decode(before))
    collectgarbage("collect")
    collectgarbage("stop")
    local at = collectgarbage("count")
    local doc = assert(json.decode(text))
    local kb = collectgarbage("count") - at
    collectgarbage("restart")
    return kb, doc
  end

  it("reserves for a small body no more than it can hold, after a large one", function()
    -- the size guesses carry over from one body to the next (an endpoint's
    -- answers share a shape), capped by what the rest of the body can hold
    local members = {}
    for i = 1, 1000 do members[i] = ('"k%d":%d'):format(i, i) end
    local big = "{" .. table.concat(members, ",") .. "}"
    local function kb_for(text)
      return kb_decoding(big, text)   -- the guess at depth 0: 1000 members
    end
    local kb, doc = kb_for('{"a":1}')
    assert.same({ a = 1 }, doc)
    assert.is_true(kb < 2, ("%.1f KiB for a one-member object"):format(kb))
    kb = kb_for('[1,2]')
    assert.is_true(kb < 2, ("%.1f KiB for a two-element array"):format(kb))
    -- and the same shape again is made at its size at once: no growth on the way
    assert.same(999, assert(json.decode(big)).k999)
  end)

  it("shares a small body's room among its nested tables, after large ones", function()
    -- each depth keeps its own guess from the bodies before; the tables one
    -- body has open at once must not each count on the whole rest of it
    local members = {}
    for i = 1, 1024 do members[i] = ('"k%d":0'):format(i) end
    local wide = table.concat(members, ",")
    local deep = "{" .. wide .. "}"
    for _ = 2, 15 do deep = "{" .. wide .. ',"z":' .. deep .. "}" end
    local zeros = ("0,"):rep(999) .. "0"
    local small = ('{"a":'):rep(14) .. "[" .. zeros .. "]" .. ("}"):rep(14)
    local function kb_after(before_text)
      local kb, doc = kb_decoding(before_text, small)
      assert.equal(1000, #doc.a.a.a.a.a.a.a.a.a.a.a.a.a.a)
      return kb
    end
    local own = kb_after(small)   -- made at its own sizes
    local primed = kb_after(deep) -- guesses of 1024 at every depth
    -- a member takes 4 bytes of body and a table slot at most 40 bytes,
    -- doubled by the power-of-two sizes: under 32 bytes per byte of body
    assert.is_true((primed - own) * 1024 < 32 * #small,
      ("%.1f KiB more for a %d B body than its own shape takes"):format(primed - own, #small))
  end)

  it("reads the same document as lua-cjson on a page of records", function()
    local records = {}
    for i = 1, 100 do
      records[i] = { recordId = ("id-%04d"):format(i), n = i, score = i + 0.5, tags = { "a", "b" },
                     owner = { email = "x@y.z", name = "Ann \"A\" \226\130\172" }, flag = i % 2 == 0 }
    end
    local text = assert(cjson.encode({ data = records, pagination = { hasMore = true, total = 100 } }))
    assert.same(cjson.decode(text), json.decode(text))
  end)

  it("refuses what is not JSON with the reason and the byte, without raising", function()
    local bad = {
      ["'a'"] = "invalid token", ['"abc'] = "unterminated string", ["[1,]"] = "invalid token",
      ['{"a":1,}'] = "member name", ["01"] = "after the value", ["[1] x"] = "after the value",
      ["-"] = "invalid number", ["1."] = "invalid number", [".5"] = "invalid token",
      ["1e"] = "invalid number", ["+1"] = "invalid token", ["nul"] = "invalid token",
      ["tru"] = "invalid token", ["[1 2]"] = "expected ','", ['{"a" 1}'] = "expected ':'",
      ['{1:2}'] = "member name", ['"\\x"'] = "invalid escape", ['"\\u12"'] = "\\u escape",
      ['"\\ud800"'] = "surrogate", ['"\\udc00x"'] = "surrogate", ['"\\ud800\\u0041"'] = "surrogate",
      ['"a\nb"'] = "control character", ['"a\0b"'] = "control character", [""] = "end of document",
      ["   "] = "end of document", ["[" ] = "end of document", ["{"] = "member name",
      ["[1"] = "unterminated array", ['{"a":1'] = "unterminated object", ["// c\n1"] = "invalid token",
      [("1"):rep(200) .. ".5"] = "number too long",
    }
    for text, why in pairs(bad) do
      local doc, err = json.decode(text)
      assert.is_nil(doc, text)
      assert.is_string(err, text)
      assert.truthy(err:find(why, 1, true), ("%q: %s"):format(text, err))
      assert.truthy(err:find("at byte %d+"), err)
    end
    local _, err = json.decode('{"a": tru}')
    assert.equal("invalid JSON: invalid token at byte 7", err)
  end)

  it("refuses nesting deeper than 1000 and takes 1000", function()
    local ok = assert(json.decode(("["):rep(1000) .. ("]"):rep(1000)))
    local depth, t = 0, ok
    while type(t) == "table" do depth, t = depth + 1, t[1] end
    assert.equal(1000, depth)
    local doc, err = json.decode(("["):rep(1001) .. ("]"):rep(1001))
    assert.is_nil(doc)
    assert.truthy(err:find("nested too deeply", 1, true))
    doc, err = json.decode(('{"a":'):rep(100000))
    assert.is_nil(doc)
    assert.truthy(err:find("nested too deeply", 1, true))
  end)

  it("raises only for a caller's mistake", function()
    assert.has_error(function() json.decode({}) end)
    assert.has_error(function() json.decode() end)
  end)
end)
