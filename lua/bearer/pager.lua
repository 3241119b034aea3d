--- bearer.pager: one lazy pager for every listing of every API.
--
--   for run in c:runs{ limit = 50 } do … end       -- items (the pager has __call)
--   for page in c:runs():pages() do … end          -- whole pages
--   local all = c:runs():all()                     -- every item in one array
--
-- Two strategies, chosen by the API module: `cursor` (the page names the
-- next one: Overten's next_cursor) and `offset` (the caller counts: an
-- offset advanced by what arrived, with a total or a hasMore flag, as
-- Optiverse's). Nothing is fetched before the first item is asked for. A
-- failed page raises its error object: an iterator has no other way to
-- report it, and ending quietly would look like the end of the list.
local client = require "bearer.client"
local errors = require "bearer.error"

local M = {}

--- A lazy pager: `for item in pager do`, `pager:pages()`, `pager:all()`.
---@class bearer.Pager
---@overload fun(): any
local Pager = {}
Pager.__index = Pager

-- Items of a page: `{data = [...]}`, `{items = [...]}`, or a bare array
-- (listings whose wrapper the notes do not show).
local function items_of(doc)
  if type(doc) ~= "table" then return {} end
  if type(doc.data) == "table" then return doc.data end
  if type(doc.items) == "table" then return doc.items end
  if doc[1] ~= nil then return doc end
  return {}
end
--- The items of a listing document: `data`, `items`, or the document when it is an array.
---@type fun(doc: any): table
M.items_of = items_of

-- {====================================================== strategies
-- A strategy turns a fetched document into a page and says where the next
-- one starts: start() -> position; page(doc, position) -> page, next
-- position or nil at the end.

--- A cursor-paged document as a page: { data=, next_cursor=, raw= }.
---@param doc any
---@return { data: table, next_cursor: string|nil, raw: any }
function M.cursor_page(doc)
  local cursor = type(doc) == "table" and doc.next_cursor or nil
  if cursor ~= nil and type(cursor) ~= "string" then cursor = tostring(cursor) end
  if cursor == "" then cursor = nil end
  return { data = items_of(doc), next_cursor = cursor, raw = doc }
end

local function cursor_strategy(first)
  local seen = {}
  if first then seen[first] = true end
  return {
    start = function() return first end,
    page = function(doc)
      local page = M.cursor_page(doc)
      local cursor = page.next_cursor
      if cursor == nil then return page, nil end
      if seen[cursor] then
        -- A server handing back a cursor it gave before would make the
        -- loop endless; stop with an error the caller can see.
        error(errors.new{ kind = "server", code = "repeated_cursor",
          message = "the API returned a cursor it had already returned; stopping" }, 0)
      end
      seen[cursor] = true
      return page, cursor
    end,
  }
end

local function offset_strategy(first)
  return {
    start = function() return first or 0 end,
    page = function(doc, offset)
      local data = items_of(doc)
      local p = type(doc) == "table" and type(doc.pagination) == "table" and doc.pagination or {}
      local page = { data = data, pagination = p, offset = offset, raw = doc }
      local total = tonumber(p.total)
      local nxt = offset + #data
      if #data == 0 or p.hasMore == false or (total ~= nil and nxt >= total) then
        return page, nil
      end
      return page, nxt
    end,
  }
end

-- }======================================================

-- `strategy()` makes a fresh strategy: each walk (pages()) starts anew.
local function new(fetch, strategy, dedupe)
  return setmetatable({ fetch = fetch, strategy = strategy, dedupe = dedupe }, Pager)
end

--- A pager over `fetch(cursor) -> doc | nil, err` (cursor nil for the
-- first page unless `first` is given), following each page's next_cursor.
---@param fetch fun(cursor: string|nil): table|nil, table|nil
---@param first string|nil
---@return bearer.Pager
function M.cursor(fetch, first)
  return new(fetch, function() return cursor_strategy(first) end)
end

--- A pager over `fetch(offset) -> doc | nil, err`, from `opts.offset`
-- (default 0), advancing by the items that arrived. `opts.dedupe` names
-- an item field (an id): an item whose id was already yielded is skipped,
-- since an insert at the head of a newest-first list shifts an item seen
-- onto the next page.
---@param fetch fun(offset: integer): table|nil, table|nil
---@param opts { offset: integer|nil, dedupe: string|nil }|nil
---@return bearer.Pager
function M.offset(fetch, opts)
  opts = opts or {}
  local first = opts.offset
  return new(fetch, function() return offset_strategy(first) end, opts.dedupe)
end

--- An iterator over whole pages: { data=, raw=, and next_cursor= (cursor)
-- or pagination=, offset= (offset) }. bearer.response_of(page) works.
---@return fun(): table|nil
function Pager:pages()
  local fetch, strategy = self.fetch, self.strategy()
  local position, done = strategy.start(), false
  return function()
    if done then return nil end
    local doc, err = fetch(position)
    if doc == nil then
      done = true
      error(err, 0)
    end
    local ok, page, nxt = pcall(strategy.page, doc, position)
    if not ok then
      done = true
      error(page, 0)
    end
    client.remember(page, client.response_of(doc))
    if nxt == nil then done = true else position = nxt end
    return page
  end
end

-- One item per call: the generic-for protocol.
function Pager:__call()
  local dedupe = self.dedupe
  while true do
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
    local item = buf[i]
    local id = dedupe and type(item) == "table" and item[dedupe]
    if not id then return item end
    self.seen = self.seen or {}
    if not self.seen[id] then
      self.seen[id] = true
      return item
    end
  end
end

--- Every remaining item in one array (reads every page).
---@return table[] items
function Pager:all()
  local out = {}
  for item in self do out[#out + 1] = item end
  return out
end

return M
