/*
** vault.c: secrets shared by number across the Lua VMs of one process.
**
** nginx runs the SDK's transfers in worker threads, each with a Lua VM of
** its own, and ngx.run_worker_thread passes only plain values. A key's
** secret must not become one, so the requesting VM puts the key in the
** vault and sends its number; the thread's transfer reads the bytes from
** the vault in C. Entries are copies in pages of their own, like keys,
** and are wiped when their last holder drops them. The vault is the one
** piece of process-wide state in bearer, behind one mutex.
*/
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bearer.h"

typedef struct vault_entry {
  unsigned char *bytes;     /* own pages; NULL: free slot */
  size_t len, map_len;
  long holders;             /* vault_put holders + transfers in progress */
} vault_entry;

static pthread_mutex_t vault_lock = PTHREAD_MUTEX_INITIALIZER;
static vault_entry *vault_entries;   /* grows, never shrinks: ids stay valid */
static size_t vault_size;

static void vault_wipe(vault_entry *e) {
  bearer_cleanse(e->bytes, e->map_len);
  munlock(e->bytes, e->map_len);
  munmap(e->bytes, e->map_len);
  e->bytes = NULL;
  e->len = e->map_len = 0;
}

/* When the library is unloaded (lua_close, dlclose, exit), whatever is
** left is wiped and the table freed: no secret outlives bearer. */
__attribute__((destructor)) static void vault_unload(void) {
  pthread_mutex_lock(&vault_lock);
  for (size_t i = 0; i < vault_size; i++)
    if (vault_entries[i].bytes != NULL) vault_wipe(&vault_entries[i]);
  free(vault_entries);
  vault_entries = NULL;
  vault_size = 0;
  pthread_mutex_unlock(&vault_lock);
}

/* Drops one holder of id; the last one wipes. Caller holds the lock. */
static void vault_release_locked(size_t id) {
  if (id == 0 || id > vault_size) return;
  vault_entry *e = &vault_entries[id - 1];
  if (e->bytes != NULL && --e->holders == 0) vault_wipe(e);
}

/* A copy of the bytes of key as a new entry; its id (1-based), or 0. */
static size_t vault_put(const bearer_key *k) {
  long page = sysconf(_SC_PAGESIZE);
  size_t map_len = ((k->len + (size_t)page) / (size_t)page) * (size_t)page;
  void *p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return 0;
#ifdef MADV_DONTDUMP
  madvise(p, map_len, MADV_DONTDUMP);
#endif
  mlock(p, map_len);
  memcpy(p, k->secret, k->len);
  pthread_mutex_lock(&vault_lock);
  size_t id = 0;
  for (size_t i = 0; i < vault_size; i++)
    if (vault_entries[i].bytes == NULL) {
      id = i + 1;
      break;
    }
  if (id == 0) {
    vault_entry *grown = realloc(vault_entries, (vault_size + 16) * sizeof *grown);
    if (grown != NULL) {
      memset(grown + vault_size, 0, 16 * sizeof *grown);
      vault_entries = grown;
      id = vault_size + 1;
      vault_size += 16;
    }
  }
  if (id != 0) {
    vault_entry *e = &vault_entries[id - 1];
    e->bytes = p;
    e->len = k->len;
    e->map_len = map_len;
    e->holders = 1;
  }
  pthread_mutex_unlock(&vault_lock);
  if (id == 0) {
    bearer_cleanse(p, map_len);
    munmap(p, map_len);
  }
  return id;
}

BEARER_INTERNAL int bearer_vault_acquire(size_t id, bearer_secret *out) {
  int ok = 0;
  pthread_mutex_lock(&vault_lock);
  if (id >= 1 && id <= vault_size && vault_entries[id - 1].bytes != NULL) {
    vault_entry *e = &vault_entries[id - 1];
    e->holders++;
    out->bytes = e->bytes;
    out->len = e->len;
    ok = 1;
  }
  pthread_mutex_unlock(&vault_lock);
  return ok;
}

BEARER_INTERNAL void bearer_vault_release(size_t id) {
  pthread_mutex_lock(&vault_lock);
  vault_release_locked(id);
  pthread_mutex_unlock(&vault_lock);
}

/* core.vault_put(key) -> id: the key's bytes, shareable by number */
BEARER_INTERNAL int bearer_vault_put_lua(lua_State *L) {
  size_t id = vault_put(bearer_key_check(L, 1));
  if (id == 0) return luaL_error(L, "cannot map memory for the vault");
  lua_pushinteger(L, (lua_Integer)id);
  return 1;
}

/* core.vault_drop(id): the holder that put it lets go */
static int vault_drop_lua(lua_State *L) {
  lua_Integer id = luaL_checkinteger(L, 1);
  if (id > 0) bearer_vault_release((size_t)id);
  return 0;
}

static const luaL_Reg vault_functions[] = {
  {"vault_put", bearer_vault_put_lua},
  {"vault_drop", vault_drop_lua},
  {NULL, NULL}
};

BEARER_INTERNAL void bearer_vault_open(lua_State *L) {
  luaL_setfuncs(L, vault_functions, 0);
}
