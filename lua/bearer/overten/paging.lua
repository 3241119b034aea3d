--- bearer.overten.paging: lazy cursor paging behind `for item in c:runs{…}`.
--
-- A pager is called by the generic `for` (it has __call), so
--   for run in c:runs{ limit = 50 } do … end
-- fetches one page at a time. `pager:pages()` walks whole pages instead.
-- A failed page raises its error object: an iterator has no other way to
-- report it, and swallowing it would look like the end of the list.
local errors = require "bearer.error"

local M = {}
local Pager = {}
Pager.__index = Pager

--- `fetch(cursor)` returns the decoded page (or nil, err); `cursor` is nil
-- for the first page. `first` optionally starts from a caller's cursor.
function M.new(fetch, first)
  return setmetatable({ fetch = fetch, first = first }, Pager)
end

-- Items of a page: the documented `{data = [...], next_cursor = ...}`, or
-- a bare array (listings whose wrapper the notes do not show).
local function items_of(page)
  if type(page) ~= "table" then return {} end
  if type(page.data) == "table" then return page.data end
  if type(page.items) == "table" then return page.items end
  if page[1] ~= nil then return page end
  return {}
end
M.items_of = items_of

--- Normalises a fetched page to `{data=, next_cursor=, raw=}`.
function M.page(doc)
  local cursor = type(doc) == "table" and doc.next_cursor or nil
  if cursor ~= nil and type(cursor) ~= "string" then cursor = tostring(cursor) end
  if cursor == "" then cursor = nil end
  return { data = items_of(doc), next_cursor = cursor, raw = doc }
end

--- An iterator over whole pages ({data=, next_cursor=, raw=}).
function Pager:pages()
  local fetch, cursor, done = self.fetch, self.first, false
  local seen = {}
  if cursor then seen[cursor] = true end
  return function()
    if done then return nil end
    local doc, err = fetch(cursor)
    if doc == nil then
      done = true
      error(err, 0)
    end
    local page = M.page(doc)
    local nxt = page.next_cursor
    if nxt == nil then
      done = true
    elseif seen[nxt] then
      -- A server handing back a cursor it gave before would make the loop
      -- endless; stop with an error the caller can see.
      done = true
      error(errors.new{ kind = "server", code = "repeated_cursor",
        message = "the API returned a cursor it had already returned; stopping" }, 0)
    else
      seen[nxt] = true
      cursor = nxt
    end
    return page
  end
end

-- One item per call: the generic-for protocol.
function Pager:__call()
  local buf, i = self.buf, self.i
  while not buf or i > #buf do
    if self.done then return nil end
    if not self.next_page then self.next_page = self:pages() end
    local page = self.next_page()
    if page == nil then
      self.done = true
      return nil
    end
    buf, i = page.data, 1
    self.buf = buf
  end
  self.i = i + 1
  return buf[i]
end

--- Every remaining item in one array (reads every page).
function Pager:all()
  local out = {}
  for item in self do out[#out + 1] = item end
  return out
end

return M
