/*
** json.c: JSON text to Lua values, for every response body bearer decodes
** (core.json_decode, used by lua/bearer/json.lua; encoding stays with
** lua-cjson).
**
** Why a decoder of our own rather than lua-cjson's: Debian's lua-cjson
** (2.1.0) decodes every number as a float and keeps object nulls, so each
** body needed a second walk in Lua (nulls out of objects, integers back),
** and its decode grows every table from empty, one rehash per doubling.
** Measured on a 34 KB records page (issue 9's pages row): cjson's decode
** alone cost 5.1x the raw transfer, the walk 1.3x more. This reader builds
** the document bearer.json promises in one pass and creates the tables of
** a page's records at their final size (see json_guess).
**
** What it returns (the rules bearer.json documents):
**   - an object member whose value is null is left out (`if t.x then`
**     reads as it says); a null inside an array stays, as the light
**     userdata NULL that cjson.null also is, so lengths hold;
**   - a number written without fraction or exponent that fits 64 bits is
**     a Lua integer (on 5.3+); any other number is a float, except an
**     integral float below 2^53 in magnitude, which becomes an integer,
**     as the Lua-side walk did before;
**   - strings are the bytes between the quotes with escapes resolved
**     (\uXXXX to UTF-8; a lone surrogate is an error).
** It is strict RFC 8259: no comments, no trailing commas, no raw control
** bytes in strings, nothing after the value but whitespace; nesting deeper
** than JSON_MAX_DEPTH is refused. A refusal is `nil, message` naming the
** byte offset; only running out of memory raises.
*/
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "bearer.h"

/* cjson's default decode depth; a hostile body cannot take the C stack. */
#define JSON_MAX_DEPTH 1000
/* Depths whose containers' sizes are remembered (see json_guess), and the
** largest size guessed. */
#define JSON_SHAPE_DEPTH 16
#define JSON_GUESS_MAX 1024

/* [0] arrays, [1] objects: the last size read at each depth. One per Lua
** state (json_decode's upvalue), kept from call to call: the answers of
** one endpoint share a shape, so even a body's first tables are made at
** their size. */
typedef int json_shape[2][JSON_SHAPE_DEPTH];

typedef struct {
  const unsigned char *p, *end, *start;
  int depth;
  const char *why; /* static text of the first refusal */
  size_t at;       /* its byte offset */
  int (*shape)[JSON_SHAPE_DEPTH];
  size_t room;     /* bytes of the body no guess has counted on yet */
} json_reader;

static int json_fail(json_reader *r, const char *why) {
  if (!r->why) {
    r->why = why;
    r->at = (size_t)(r->p - r->start);
  }
  return 0;
}

static void json_skip_space(json_reader *r) {
  while (r->p < r->end &&
         (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
    r->p++;
}

static int json_value(lua_State *L, json_reader *r);

/* {====================================================== strings */

/* 1 for a byte that stands for itself inside a string: not '"', not '\\',
** not a control character. A table lookup per byte is what keeps the scan
** of plain strings (most of a body) off the profile. */
static const unsigned char json_plain[256] = {
#define JSON_P16 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x00 */
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
  1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20: '"' */
  JSON_P16, JSON_P16,                             /* 0x30, 0x40 */
  /* 0x50, with '\\' */
  1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
  JSON_P16, JSON_P16,                             /* 0x60, 0x70 */
  JSON_P16, JSON_P16, JSON_P16, JSON_P16,         /* 0x80 to 0xFF: UTF-8 */
  JSON_P16, JSON_P16, JSON_P16, JSON_P16,
#undef JSON_P16
};

static int json_hex4(const unsigned char *p, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = p[i], d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return 0;
    v = v << 4 | d;
  }
  *out = v;
  return 1;
}

static void json_add_utf8(luaL_Buffer *b, unsigned cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) {
    u[0] = (char)cp;
    n = 1;
  } else if (cp < 0x800) {
    u[0] = (char)(0xC0 | cp >> 6);
    u[1] = (char)(0x80 | (cp & 0x3F));
    n = 2;
  } else if (cp < 0x10000) {
    u[0] = (char)(0xE0 | cp >> 12);
    u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    u[2] = (char)(0x80 | (cp & 0x3F));
    n = 3;
  } else {
    u[0] = (char)(0xF0 | cp >> 18);
    u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    u[3] = (char)(0x80 | (cp & 0x3F));
    n = 4;
  }
  luaL_addlstring(b, u, n);
}

/* The first byte at or after p (before end) that is not plain: SSE2 looks
** at 16 bytes per step where the compiler targets it (every x86-64), the
** table finishes; on a 34 KB page this scan was 10 % of the decode. */
static const unsigned char *json_scan_plain(const unsigned char *p, const unsigned char *end) {
#ifdef __SSE2__
  const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\');
  const __m128i flip = _mm_set1_epi8((char)0x80), space = _mm_set1_epi8((char)(0x20 ^ 0x80));
  while (end - p >= 16) {
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    /* control bytes: v < 0x20 unsigned, as a signed compare after flipping the top bit */
    __m128i stop = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                _mm_cmplt_epi8(_mm_xor_si128(v, flip), space));
    int mask = _mm_movemask_epi8(stop);
    if (mask) return p + __builtin_ctz((unsigned)mask);
    p += 16;
  }
#endif
  while (p < end && json_plain[*p]) p++;
  return p;
}

/* One \uXXXX (or a surrogate pair of them) at r->p, just past the 'u'. */
static int json_unicode_escape(json_reader *r, luaL_Buffer *b) {
  unsigned cp, lo;
  if (r->end - r->p < 4 || !json_hex4(r->p, &cp))
    return json_fail(r, "invalid \\u escape");
  r->p += 4;
  if (cp >= 0xDC00 && cp <= 0xDFFF) return json_fail(r, "lone low surrogate in \\u escape");
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    if (r->end - r->p < 6 || r->p[0] != '\\' || r->p[1] != 'u' || !json_hex4(r->p + 2, &lo) ||
        lo < 0xDC00 || lo > 0xDFFF)
      return json_fail(r, "high surrogate without its low half in \\u escape");
    r->p += 6;
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
  }
  json_add_utf8(b, cp);
  return 1;
}

/* The rest of a string with escapes, from the first backslash at r->p;
** [from, r->p) is its plain beginning. */
static int json_escaped_string(lua_State *L, json_reader *r, const unsigned char *from) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addlstring(&b, (const char *)from, (size_t)(r->p - from));
  for (;;) {
    const unsigned char *run = r->p;
    r->p = json_scan_plain(r->p, r->end);
    luaL_addlstring(&b, (const char *)run, (size_t)(r->p - run));
    if (r->p >= r->end) return json_fail(r, "unterminated string");
    if (*r->p == '"') break;
    if (*r->p < 0x20) return json_fail(r, "control character in string");
    if (r->end - r->p < 2) return json_fail(r, "unterminated string");
    unsigned char e = r->p[1];
    r->p += 2;
    switch (e) {
      case '"': luaL_addchar(&b, '"'); break;
      case '\\': luaL_addchar(&b, '\\'); break;
      case '/': luaL_addchar(&b, '/'); break;
      case 'b': luaL_addchar(&b, '\b'); break;
      case 'f': luaL_addchar(&b, '\f'); break;
      case 'n': luaL_addchar(&b, '\n'); break;
      case 'r': luaL_addchar(&b, '\r'); break;
      case 't': luaL_addchar(&b, '\t'); break;
      case 'u':
        if (!json_unicode_escape(r, &b)) return 0;
        break;
      default: r->p -= 2; return json_fail(r, "invalid escape in string");
    }
  }
  r->p++;
  luaL_pushresult(&b);
  return 1;
}

/* A string at r->p (on its opening quote). Most strings have no escape and
** are pushed straight from the body, without a copy. */
static int json_string(lua_State *L, json_reader *r) {
  const unsigned char *from = ++r->p;
  r->p = json_scan_plain(r->p, r->end);
  if (r->p >= r->end) return json_fail(r, "unterminated string");
  if (*r->p == '"') {
    lua_pushlstring(L, (const char *)from, (size_t)(r->p - from));
    r->p++;
    return 1;
  }
  if (*r->p < 0x20) return json_fail(r, "control character in string");
  return json_escaped_string(L, r, from);
}

/* }====================================================== */

/* {====================================================== numbers */

#define JSON_DIGIT(c) ((c) >= '0' && (c) <= '9')

/* An integral float below 2^53 in magnitude is exact as an integer; the
** SDK's documents count things with such numbers. */
static void json_push_float(lua_State *L, double d) {
#if LUA_VERSION_NUM >= 503
  if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(long long)d) {
    lua_pushinteger(L, (lua_Integer)d);
    return;
  }
#endif
  lua_pushnumber(L, (lua_Number)d);
}

static int json_number(lua_State *L, json_reader *r) {
  const unsigned char *from = r->p;
  int negative = 0, integral = 1;
  unsigned long long v = 0;
  int digits = 0;
  if (*r->p == '-') {
    negative = 1;
    r->p++;
  }
  if (r->p >= r->end || !JSON_DIGIT(*r->p)) return json_fail(r, "invalid number");
  if (*r->p == '0') {
    r->p++;
    digits = 1;
  } else {
    while (r->p < r->end && JSON_DIGIT(*r->p)) {
      if (digits < 19) v = v * 10 + (unsigned)(*r->p - '0');
      digits++;
      r->p++;
    }
  }
  if (r->p < r->end && *r->p == '.') {
    integral = 0;
    r->p++;
    if (r->p >= r->end || !JSON_DIGIT(*r->p)) return json_fail(r, "invalid number");
    while (r->p < r->end && JSON_DIGIT(*r->p)) r->p++;
  }
  if (r->p < r->end && (*r->p == 'e' || *r->p == 'E')) {
    integral = 0;
    r->p++;
    if (r->p < r->end && (*r->p == '+' || *r->p == '-')) r->p++;
    if (r->p >= r->end || !JSON_DIGIT(*r->p)) return json_fail(r, "invalid number");
    while (r->p < r->end && JSON_DIGIT(*r->p)) r->p++;
  }
  /* 18 digits always fit in 63 bits; the hot path never leaves here */
  if (integral && digits <= 18) {
#if LUA_VERSION_NUM >= 503
    lua_pushinteger(L, negative ? -(lua_Integer)v : (lua_Integer)v);
#else
    lua_pushnumber(L, negative ? -(lua_Number)v : (lua_Number)v);
#endif
    return 1;
  }
#if LUA_VERSION_NUM >= 503
  if (integral && digits == 19 && (v <= (unsigned long long)LUA_MAXINTEGER ||
                                   (negative && v == (unsigned long long)LUA_MAXINTEGER + 1))) {
    lua_pushinteger(L, negative ? (lua_Integer)(0 - v) : (lua_Integer)v);
    return 1;
  }
#endif
  /* strtod reads the locale's decimal point (a host may have set one that
  ** is not '.'), so the text is copied with its point swapped, as Lua's own
  ** lua_str2number does. A valid JSON number longer than the buffer has
  ** that many digits, which no double keeps anyway: it is refused. */
  char buf[128];
  size_t n = (size_t)(r->p - from);
  if (n >= sizeof buf) return json_fail(r, "number too long");
  memcpy(buf, from, n);
  buf[n] = '\0';
  char point = localeconv()->decimal_point[0];
  if (point != '.') {
    char *dot = strchr(buf, '.');
    if (dot) *dot = point;
  }
  json_push_float(L, strtod(buf, NULL));
  return 1;
}

/* }====================================================== */

/* {====================================================== containers */

/*
** A container's table is created at its opening bracket and filled as its
** members are read. Its size is a guess: the size of the last container of
** the same kind at the same depth (the records of a page share a shape),
** so a page's tables are created at their final size and never rehashed.
** A wrong guess costs only Lua's usual growth. The guess is what the last
** one held (in this body or the state's previous one), never more than
** JSON_GUESS_MAX nor more than the rest of this body could hold (a member
** takes at least 4 bytes, '"":0', an element 2, '0,'). The tables a body
** has open at once share that rest: each guess counts on its members'
** bytes (r->room), so a small body after large ones cannot make the reader
** reserve more than bodies of its size hold anyway.
*/

static int json_guess(json_reader *r, int object) {
  if (r->depth >= JSON_SHAPE_DEPTH) return 0;
  size_t each = object ? 4 : 2;
  size_t rest = (size_t)(r->end - r->p);
  if (rest > r->room) rest = r->room;
  size_t n = (size_t)r->shape[object][r->depth];
  if (n > rest / each) n = rest / each;
  r->room -= n * each;
  return (int)n;
}

static void json_remember(json_reader *r, int object, lua_Integer n) {
  if (r->depth < JSON_SHAPE_DEPTH)
    r->shape[object][r->depth] = n < JSON_GUESS_MAX ? (int)n : JSON_GUESS_MAX;
}

/* After a member: 1 and past the ',' when another follows, 0 and past
** `close` at the container's end, -1 on a refusal. */
static int json_more(json_reader *r, unsigned char close, const char *unterminated,
                     const char *expected) {
  json_skip_space(r);
  if (r->p >= r->end) return json_fail(r, unterminated), -1;
  if (*r->p == close) {
    r->p++;
    return 0;
  }
  if (*r->p != ',') return json_fail(r, expected), -1;
  r->p++;
  json_skip_space(r);
  return 1;
}

static int json_array(lua_State *L, json_reader *r) {
  lua_Integer n = 0;
  r->p++;
  lua_createtable(L, json_guess(r, 0), 0);
  int t = lua_gettop(L);
  json_skip_space(r);
  if (r->p < r->end && *r->p == ']') {
    r->p++;
    json_remember(r, 0, 0);
    return 1;
  }
  for (;;) {
    if (!json_value(L, r)) return 0;
    lua_rawseti(L, t, ++n);
    int more = json_more(r, ']', "unterminated array", "expected ',' or ']' in array");
    if (more < 0) return 0;
    if (!more) break;
  }
  json_remember(r, 0, n);
  return 1;
}

/* Members go in as they are read, so a repeated name keeps its last value;
** a null one is left out, and takes out a value the name had before. */
static int json_object(lua_State *L, json_reader *r) {
  lua_Integer n = 0;
  r->p++;
  lua_createtable(L, 0, json_guess(r, 1));
  int t = lua_gettop(L);
  json_skip_space(r);
  if (r->p < r->end && *r->p == '}') {
    r->p++;
    json_remember(r, 1, 0);
    return 1;
  }
  for (;;) {
    if (r->p >= r->end || *r->p != '"') return json_fail(r, "expected a member name in object");
    if (!json_string(L, r)) return 0;
    json_skip_space(r);
    if (r->p >= r->end || *r->p != ':') return json_fail(r, "expected ':' in object");
    r->p++;
    json_skip_space(r);
    if (!json_value(L, r)) return 0;
    if (lua_islightuserdata(L, -1)) { /* null */
      lua_pop(L, 1);
      lua_pushvalue(L, -1);
      lua_rawget(L, t);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 2);
      } else {
        lua_pop(L, 1);
        lua_pushnil(L);
        lua_rawset(L, t);
        n--;
      }
    } else {
      lua_rawset(L, t);
      n++;
    }
    int more = json_more(r, '}', "unterminated object", "expected ',' or '}' in object");
    if (more < 0) return 0;
    if (!more) break;
  }
  json_remember(r, 1, n);
  return 1;
}

/* }====================================================== */

static int json_literal(json_reader *r, const char *word, size_t n) {
  if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
    return json_fail(r, "invalid token");
  r->p += n;
  return 1;
}

/* Pushes the value at r->p (whitespace already skipped); 0 on a refusal,
** with r->why set and the stack left for the caller to reset. */
static int json_value(lua_State *L, json_reader *r) {
  if (r->p >= r->end) return json_fail(r, "unexpected end of document");
  switch (*r->p) {
    case '"': return json_string(L, r);
    case '{':
    case '[': {
      if (++r->depth > JSON_MAX_DEPTH) return json_fail(r, "nested too deeply");
      /* a container holds its table, a name, a value and a lookup */
      if (!lua_checkstack(L, 4)) return json_fail(r, "document too large");
      int ok = *r->p == '{' ? json_object(L, r) : json_array(L, r);
      r->depth--;
      return ok;
    }
    case 't':
      if (!json_literal(r, "true", 4)) return 0;
      lua_pushboolean(L, 1);
      return 1;
    case 'f':
      if (!json_literal(r, "false", 5)) return 0;
      lua_pushboolean(L, 0);
      return 1;
    case 'n':
      if (!json_literal(r, "null", 4)) return 0;
      lua_pushlightuserdata(L, NULL); /* cjson.null */
      return 1;
    default:
      if (*r->p == '-' || JSON_DIGIT(*r->p)) return json_number(L, r);
      return json_fail(r, "invalid token");
  }
}

/* core.json_decode(text) -> value | nil, message */
static int json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  json_reader r;
  r.p = r.start = (const unsigned char *)s;
  r.end = r.p + len;
  r.depth = 0;
  r.why = NULL;
  r.at = 0;
  r.shape = *(json_shape *)lua_touserdata(L, lua_upvalueindex(1));
  r.room = len;
  lua_settop(L, 1);
  json_skip_space(&r);
  if (json_value(L, &r)) {
    json_skip_space(&r);
    if (r.p == r.end) return 1;
    json_fail(&r, "unexpected text after the value");
  }
  lua_settop(L, 1);
  luaL_pushfail(L);
  lua_pushfstring(L, "invalid JSON: %s at byte %d", r.why, (int)r.at + 1);
  return 2;
}

BEARER_INTERNAL void bearer_json_open(lua_State *L) {
  json_shape *shape = lua_newuserdatauv(L, sizeof(json_shape), 0);
  memset(shape, 0, sizeof(json_shape));
  lua_pushcclosure(L, json_decode, 1);
  lua_setfield(L, -2, "json_decode");
}
